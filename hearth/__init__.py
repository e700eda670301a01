"""Hearth: shared core (config, CLI, identity, auth, logging, metrics).

This package imports no service; services import it.
"""

__version__ = "0.1.0.dev0"
