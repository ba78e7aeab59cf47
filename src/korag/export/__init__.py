"""Exporting korag models to serving engines."""
