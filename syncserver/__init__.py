"""Hearth syncserver service."""
