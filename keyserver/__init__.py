"""Hearth keyserver service."""
