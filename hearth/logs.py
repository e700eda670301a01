"""Logging set-up: one line per record, no secrets (callers never log tokens or keys)."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # uvicorn repeats start-up lines once per server under `hearth up`.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
