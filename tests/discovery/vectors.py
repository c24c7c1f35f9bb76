"""Access to the shared confd test vectors (``confd-vectors.json``).

The spec directory lives next to the repository (``<repo>/../shared/spec``);
set ``FLOTTE_SPEC_DIR`` to point elsewhere (e.g. in a CI checkout).  Mirrors
``tests/unit/vectors.py``.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

#: The repository root: tests/discovery/vectors.py → parents[2].
REPO_ROOT = Path(__file__).resolve().parents[2]


def spec_dir() -> Path:
    """Where the spec files are: ``$FLOTTE_SPEC_DIR`` or ``<repo>/../shared/spec``."""
    override = os.environ.get("FLOTTE_SPEC_DIR")
    if override:
        return Path(override)
    return REPO_ROOT.parent / "shared" / "spec"


def seed_dir() -> Path:
    """The seed text (the CoreOS guide): next to the spec directory."""
    return spec_dir().parent / "seed"


@lru_cache(maxsize=1)
def load_confd_vectors() -> list[dict[str, Any]]:
    """The parsed ``confd-vectors.json`` (cached; treat it as read-only)."""
    path = spec_dir() / "confd-vectors.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"confd test vectors not found at {path}; set FLOTTE_SPEC_DIR to the directory "
            "holding confd-vectors.json"
        )
    with path.open(encoding="utf-8") as f:
        data: list[dict[str, Any]] = json.load(f)
    return data
