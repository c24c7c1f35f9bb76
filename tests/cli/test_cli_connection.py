"""State directory, endpoint and token rules (pure)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flotte import paths
from flotte.api.client import ApiError
from flotte.cli.connection import EndpointError, error_text, find_token, normalize_endpoint


def test_state_dir_rules() -> None:
    assert paths.default_state_dir(euid=0, env={"XDG_STATE_HOME": "/x"}) == \
        Path("/var/lib/flotte")
    assert paths.default_state_dir(euid=1000, env={"XDG_STATE_HOME": "/x/state"}) == \
        Path("/x/state/flotte")
    # relative XDG_STATE_HOME is ignored, as the XDG spec says
    assert paths.default_state_dir(euid=1000, env={"XDG_STATE_HOME": "rel"},
                                   home="/home/u") == Path("/home/u/.local/state/flotte")
    assert paths.default_state_dir(euid=1000, env={}, home="/home/u") == \
        Path("/home/u/.local/state/flotte")
    # FLOTTE_STATE_DIR (the daemon's --state-dir variable) wins for everyone
    assert paths.default_state_dir(euid=0, env={"FLOTTE_STATE_DIR": "/srv/fl"}) == \
        Path("/srv/fl")
    d = Path("/srv/fl")
    assert paths.default_endpoint(d) == "unix:///srv/fl/flotte.sock"
    assert paths.default_socket(d) == d / "flotte.sock"
    assert paths.token_path(d) == d / "api-token"


@pytest.mark.parametrize(("raw", "endpoint"), [
    ("unix:///var/run/fleet.sock", "unix:///var/run/fleet.sock"),
    ("file:///var/run/fleet.sock", "unix:///var/run/fleet.sock"),
    ("unix:///a.sock,http://b:1", "unix:///a.sock"),  # fleetctl used the first entry
    ("http://10.0.0.1:49153/", "http://10.0.0.1:49153"),
    ("https://fleet.example.com", "https://fleet.example.com"),
])
def test_endpoints(raw: str, endpoint: str) -> None:
    assert normalize_endpoint(raw) == endpoint


@pytest.mark.parametrize(("raw", "message"), [
    ("unix://var/run/fleet.sock", "must be absolute (three slashes): unix:///var/run/fleet.sock"),
    ("unix://", "names no socket file"),
    ("10.0.0.1:4001", "must be unix:///path/to/flotte.sock or http(s)://host:port"),
    ("http://:80", "names no host"),
    ("http://h:99999", "out of range"),
    ("", "is empty"),
])
def test_bad_endpoints(raw: str, message: str) -> None:
    with pytest.raises(EndpointError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        normalize_endpoint(raw)


def test_token(tmp_path: Path) -> None:
    tok = tmp_path / "api-token"
    assert find_token("http://h:1", None, tok) is None  # no file
    tok.write_text("s3cret\n")
    assert find_token("http://h:1", None, tok) == "s3cret"
    assert find_token("http://h:1", " given ", tok) == "given"
    assert find_token("unix:///s.sock", None, tok) is None  # the socket needs none
    tok.chmod(0)
    if not tok.stat().st_mode & 0o400 and not _is_root():
        assert find_token("http://h:1", None, tok) is None  # unreadable: ignored


def _is_root() -> bool:
    return os.geteuid() == 0


def test_error_hints() -> None:
    assert "flotte up" in error_text(ApiError(0, "cannot reach"), "unix:///s")
    assert "FLOTTE_TOKEN" in error_text(ApiError(401, "missing API token"), "http://h:1")
    assert error_text(ApiError(400, "bad"), "unix:///s") == "Error: bad"
