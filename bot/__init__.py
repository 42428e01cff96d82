"""Lightbox bot package."""
