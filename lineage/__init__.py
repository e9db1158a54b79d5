"""Streaming lineage for AI systems: shared core (settings, errors, Avro codec, CLI)."""
from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

#: Checkout root: where `avro/` and `deploy/` live (the package is installed editable).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
