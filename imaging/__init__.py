"""Lightbox imaging package."""
