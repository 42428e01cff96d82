"""Lightbox share package."""
