"""Hearth router service."""
