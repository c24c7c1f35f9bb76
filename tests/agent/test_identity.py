"""Machine identity: where the id comes from, metadata parsing, errors that say the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotte.agent.identity import IdentityError, machine_id, parse_metadata, resolve


def test_override_wins_and_is_checked(tmp_path: Path) -> None:
    assert machine_id(tmp_path, "A" * 32) == "a" * 32
    with pytest.raises(IdentityError, match="32 hexadecimal"):
        machine_id(tmp_path, "nope")


def test_state_dir_file_then_system_file(tmp_path: Path) -> None:
    system = tmp_path / "etc-machine-id"
    system.write_text("0123456789abcdef0123456789abcdef\n")
    state = tmp_path / "state"
    assert machine_id(state, system_file=system) == "0123456789abcdef0123456789abcdef"
    # stored on first use: a changed system file no longer matters
    system.write_text("f" * 32)
    assert machine_id(state, system_file=system) == "0123456789abcdef0123456789abcdef"
    assert (state / "machine-id").read_text().strip() == "0123456789abcdef0123456789abcdef"


def test_random_id_when_the_host_has_none(tmp_path: Path) -> None:
    a = machine_id(tmp_path / "a", system_file=tmp_path / "missing")
    b = machine_id(tmp_path / "b", system_file=tmp_path / "missing")
    assert len(a) == 32 and a != b
    assert machine_id(tmp_path / "a", system_file=tmp_path / "missing") == a


def test_metadata() -> None:
    assert parse_metadata("region=eu, disk=ssd") == {"region": "eu", "disk": "ssd"}
    assert parse_metadata("") == {}
    with pytest.raises(IdentityError, match="key=value"):
        parse_metadata("region")
    with pytest.raises(IdentityError, match="may only contain"):
        parse_metadata("a b=c")


def test_resolve(tmp_path: Path) -> None:
    ident = resolve(tmp_path, machine_id_override="b" * 32, hostname="m1", public_ip="127.0.0.2",
                    metadata="az=1")
    assert (ident.short_id, ident.hostname, ident.public_ip) == ("b" * 8, "m1", "127.0.0.2")
    assert ident.metadata == {"az": "1"}
    with pytest.raises(IdentityError, match="not an IP"):
        resolve(tmp_path, public_ip="300.1.1.1")
