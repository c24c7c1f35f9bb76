"""Helpers shared by test modules (import as ``from support import …``)."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require(binary: str, package: str) -> str:
    """Path of ``binary`` (a name on PATH or an absolute path), or skip / fail."""
    path = binary if os.path.isabs(binary) and os.access(binary, os.X_OK) \
        else shutil.which(binary)
    if path:
        return path
    msg = f"{binary} not found: install Debian's '{package}' package (make deps)"
    if in_ci():
        pytest.fail(msg + " — required under CI=true")
    pytest.skip(msg)


def require_file(path: str, package: str) -> str:
    """``path`` if it exists, else skip (fail under ``CI=true``)."""
    if os.path.exists(path):
        return path
    msg = f"{path} not found: install Debian's '{package}' package (make deps)"
    if in_ci():
        pytest.fail(msg + " — required under CI=true")
    pytest.skip(msg)
