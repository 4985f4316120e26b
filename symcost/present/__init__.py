"""Presentation layers for derived reports."""
