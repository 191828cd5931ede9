"""The real third-party models fetched by ``shared/models/get_dev_models.sh`` (PyPI packages only).

The script writes ``<dir>/manifest.json`` with each model's files, format, suggested test inputs
and state wiring.  This module finds that folder (``$INFERMUX_DEV_MODELS`` or ``models/`` at the
repository root), reads the manifest and builds the suggested inputs reproducibly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["models_dir", "load_manifest", "make_input", "make_inputs"]


def models_dir() -> Path:
    """``$INFERMUX_DEV_MODELS`` or the repository's ``models/`` folder."""
    env = os.environ.get("INFERMUX_DEV_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def load_manifest(root: Path | None = None) -> list[dict[str, Any]]:
    """The manifest's model entries ([] when the models were not fetched)."""
    path = (root or models_dir()) / "manifest.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text())["models"]


_FILLS = {
    "img": lambda rng, shape: rng.uniform(-1, 1, shape),
    "u01": lambda rng, shape: rng.uniform(0, 1, shape),
    "u255": lambda rng, shape: rng.uniform(0, 255, shape),
    "audio": lambda rng, shape: rng.normal(0, 0.1, shape),
    "zeros": lambda rng, shape: np.zeros(shape),
    "sr16k": lambda rng, shape: np.array(16000),
    "normal": lambda rng, shape: rng.normal(0, 1, shape),
}


def make_input(spec: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """One input from its manifest spec (``shape``, ``dtype``, ``fill``)."""
    fill = _FILLS.get(spec.get("fill", "normal"), _FILLS["normal"])
    return np.asarray(fill(rng, spec["shape"])).astype(np.dtype(spec["dtype"]))


def make_inputs(entry: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """All of a model's suggested inputs, seeded."""
    rng = np.random.default_rng(seed)
    return {name: make_input(spec, rng) for name, spec in entry["test_inputs"].items()}
