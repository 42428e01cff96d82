"""Lightbox glossary package."""
