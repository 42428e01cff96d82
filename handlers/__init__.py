"""Lightbox handlers package."""
