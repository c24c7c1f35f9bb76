"""Fixtures of the container tests: the test images (built once per session) and a lab.

Under ``pytest -n 2`` each worker is its own process; the images are built by
whichever worker comes first, under a lock in the directory both share, and
the other one reuses the archives.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from containers import images as recipes
from containers.support import Lab, need_podman, remove_libpod_parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "containers: runs podman containers on simulated "
                            "machines (root, podman, runc, busybox-static)")


#: held (shared) while this process runs container tests; see pytest_sessionfinish
_podman_user: IO[str] | None = None


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    global _podman_user
    need_podman()
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    _podman_user = open(base / "flotte-podman-users.lock", "w")  # noqa: SIM115 - until the end
    fcntl.flock(_podman_user, fcntl.LOCK_SH)
    dest = base / f"flotte-images-v{recipes.RECIPES_VERSION}"
    dest.mkdir(exist_ok=True)
    done = dest / "done"
    with open(base / "flotte-images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            recipes.build(dest)
            done.touch()
    return {key: dest / f"{key}.tar" for key in recipes.IMAGES}


@pytest.fixture
def lab(images: dict[str, Path]) -> Iterator[Lab]:
    lab = Lab(images)
    try:
        lab.create()
        yield lab
    finally:
        lab.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove podman's ``libpod_parent`` cgroups once no worker runs containers any more.

    Podman (cgroupfs manager) puts every container and conmon under
    ``/libpod_parent`` in each hierarchy and never removes it.  Only the last
    worker out may: another one's podman could be creating a container there,
    so the removal needs the exclusive lock that no worker holds while it
    runs container tests.  (A worker that starts container tests later makes
    the directory again and removes it at its own end.)
    """
    global _podman_user
    if _podman_user is None:
        return
    path = _podman_user.name
    _podman_user.close()  # drops the shared lock
    _podman_user = None
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        remove_libpod_parent()
