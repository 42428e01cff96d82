"""Lightbox store package."""
