"""Specifier expansion (flotte.unit.specifiers).

Every (unit, text) pair of ``specifiers`` in unit-vectors.json is a test case,
expanded with the default (system manager) context.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vectors import load_vectors

from flotte.unit import specifiers
from flotte.unit.errors import ValueParseError
from flotte.unit.specifiers import (
    INSTALL_ALLOWED,
    KNOWN_SPECIFIERS,
    SpecifierContext,
    SpecifierError,
    expand,
)

SPECIFIER_VECTORS: list[dict[str, Any]] = load_vectors()["specifiers"]

CASES = [
    pytest.param(entry["unit"], text, expected, id=f"{entry['unit']}-{text}")
    for entry in SPECIFIER_VECTORS
    for text, expected in entry["expected"].items()
]


@pytest.mark.parametrize(("unit", "text", "expected"), CASES)
def test_specifier_vector(unit: str, text: str, expected: str) -> None:
    assert expand(text, unit, SpecifierContext()) == expected


def test_vector_units_are_all_covered() -> None:
    assert len(SPECIFIER_VECTORS) >= 4
    assert {e["unit"] for e in SPECIFIER_VECTORS} >= {
        "blah.service",
        "blah@foo-foo.service",
        "blah-blah\\x2d.slice",
        "tmpl@a-b\\x2dc.service",
    }


# ------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no percent at all", "no percent at all"),
        ("100%", "100%"),
        ("%", "%"),
        ("%%%", "%%"),
        ("a %, b", "a %, b"),
        ("%é", "%é"),
        ("% n", "% n"),
        ("%-%n", "%-x.service"),
        ("%%n", "%n"),
        ("%%%n", "%x.service"),
        ("x%\ny", "x%\ny"),
    ],
)
def test_literal_percent_rules(text: str, expected: str) -> None:
    assert expand(text, "x.service", SpecifierContext()) == expected


def test_text_without_percent_is_returned_unchanged() -> None:
    text = "/usr/bin/env FOO=bar"
    assert expand(text, "not even a valid name", SpecifierContext()) is text


@pytest.mark.parametrize("spec", ["z", "Z", "k", "K", "x", "c", "r", "R", "5", "0"])
def test_unknown_specifier_is_an_error(spec: str) -> None:
    with pytest.raises(SpecifierError) as exc:
        expand(f"--opt=%{spec}", "x.service", SpecifierContext())
    err = exc.value
    assert (
        err.message
        == f'Failed to resolve unit specifiers in "--opt=%{spec}": unknown specifier %{spec}'
    )
    assert err.fix == "write %% for a literal percent sign"
    assert err.specifier == spec
    assert err.text == f"--opt=%{spec}"
    assert isinstance(err, ValueParseError)


# -------------------------------------------------------------------- allowed


def test_install_subset() -> None:
    assert set(INSTALL_ALLOWED) == set("abBgGHijlmnNopuUvwW%")
    ctx = SpecifierContext(hostname="node1.example.com")
    assert expand("%n on %l", "web@1.service", ctx, allowed=INSTALL_ALLOWED) == (
        "web@1.service on node1"
    )
    assert expand("100%%", "web.service", ctx, allowed=INSTALL_ALLOWED) == "100%"
    with pytest.raises(SpecifierError, match="specifier %t is not allowed here") as exc:
        expand("%t/x", "web.service", ctx, allowed=INSTALL_ALLOWED)
    assert exc.value.fix is not None and "%n" in exc.value.fix


def test_fleet_subset_via_allowed() -> None:
    assert expand("%p-%i", "pin@abc.service", allowed="nNpi") == "pin-abc"
    with pytest.raises(SpecifierError):
        expand("%I", "pin@abc.service", allowed="nNpi")


def test_allowed_percent_percent_always_works() -> None:
    assert expand("%%", "x.service", allowed="") == "%"


# ------------------------------------------------------------------------ host


def _full_context() -> SpecifierContext:
    return SpecifierContext(
        machine_id="a" * 32,
        boot_id="b" * 32,
        hostname="node1.example.com",
        pretty_hostname="Node One",
        user="svc",
        uid=1000,
        group="staff",
        gid=50,
        home="/home/svc",
        shell="/bin/zsh",
        runtime_dir="/run/user/1000",
        state_dir="/home/svc/.local/state",
        cache_dir="/home/svc/.cache",
        logs_dir="/home/svc/.local/state/log",
        config_dir="/home/svc/.config",
        tmp_dir="/scratch",
        var_tmp_dir="/scratch2",
        credentials_dir="/run/user/1000/credentials",
        architecture="arm64",
        kernel_release="6.1.0-test",
        os_id="debian",
        os_version_id="12",
        os_variant_id="server",
        os_build_id="b1",
        os_image_id="img",
        os_image_version="7",
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a", "arm64"),
        ("A", "7"),
        ("b", "b" * 32),
        ("B", "b1"),
        ("C", "/home/svc/.cache"),
        ("d", "/run/user/1000/credentials/web.service"),
        ("E", "/home/svc/.config"),
        ("g", "staff"),
        ("G", "50"),
        ("h", "/home/svc"),
        ("H", "node1.example.com"),
        ("l", "node1"),
        ("L", "/home/svc/.local/state/log"),
        ("m", "a" * 32),
        ("M", "img"),
        ("o", "debian"),
        ("q", "Node One"),
        ("s", "/bin/zsh"),
        ("S", "/home/svc/.local/state"),
        ("t", "/run/user/1000"),
        ("T", "/scratch"),
        ("u", "svc"),
        ("U", "1000"),
        ("v", "6.1.0-test"),
        ("V", "/scratch2"),
        ("w", "12"),
        ("W", "server"),
    ],
)
def test_host_specifiers(spec: str, expected: str) -> None:
    assert expand(f"%{spec}", "web.service", _full_context()) == expected


def test_every_known_specifier_is_tested() -> None:
    assert set(KNOWN_SPECIFIERS) == set("aAbBCdEfgGhHiIjJlLmMnNopPqsStTuUvVwWyY")


def test_default_context_is_the_system_manager() -> None:
    got = expand("%u %U %g %G %h %t %S %C %L %E %T %V %d", "web.service")
    assert got == (
        "root 0 root 0 /root /run /var/lib /var/cache /var/log /etc /tmp /var/tmp "
        "/run/credentials/web.service"
    )
    assert expand("%m", "web.service") == "0" * 32


def test_pretty_hostname_falls_back_to_short_hostname() -> None:
    ctx = SpecifierContext(hostname="node7.dc1.example.com")
    assert expand("%q", "x.service", ctx) == "node7"
    assert expand("%q", "x.service", dataclasses.replace(ctx, pretty_hostname="")) == "node7"


def test_empty_values_expand_to_nothing() -> None:
    assert expand("[%o][%w]", "x.service", SpecifierContext()) == "[][]"


# ------------------------------------------------------------------ name-based


def test_percent_f_fails_only_when_used() -> None:
    unit = "foo@a--b.service"
    assert expand("%i", unit) == "a--b"
    assert expand("%I", unit) == "a//b"
    with pytest.raises(SpecifierError, match="%f cannot be resolved") as exc:
        expand("%f", unit)
    assert exc.value.specifier == "f"


def test_percent_capital_i_rejects_malformed_escape() -> None:
    with pytest.raises(SpecifierError, match="malformed escape"):
        expand("%I", "foo@a\\xzz.service")


def test_name_specifiers_need_a_valid_name() -> None:
    with pytest.raises(SpecifierError, match="needs a valid unit name"):
        expand("%n", "not-a-unit")
    # Host specifiers do not look at the name.
    assert expand("%H", "not-a-unit", SpecifierContext(hostname="h")) == "h"


def test_dash_specifiers() -> None:
    assert expand("%j|%J", "dash-prefix-name.service") == "name|name"
    assert expand("%j|%J", "trailing-.service") == "|"
    assert expand("%p|%P", "a-b\\x2dc@i.service") == "a-b\\x2dc|a/b-c"


def test_template_unit() -> None:
    assert expand("%i|%I|%N|%f", "web@.service") == "||web@|/web"


def test_fragment_path() -> None:
    path = "/etc/flotte/units/web@.service"
    assert expand("%y", "web@1.service", fragment_path=path) == path
    assert expand("%Y", "web@1.service", fragment_path=path) == "/etc/flotte/units"
    with pytest.raises(SpecifierError, match="file path"):
        expand("%y", "web@1.service")
    with pytest.raises(SpecifierError, match="needs a directory"):
        expand("%Y", "web@1.service", fragment_path="web@.service")


# ------------------------------------------------------------------- from_host


def test_from_host_system() -> None:
    ctx = SpecifierContext.from_host()
    assert re.fullmatch(r"[0-9a-f]{32}", ctx.machine_id)
    assert re.fullmatch(r"[0-9a-f]{32}", ctx.boot_id)
    assert ctx.hostname
    assert (ctx.user, ctx.uid, ctx.group, ctx.gid, ctx.home) == ("root", 0, "root", 0, "/root")
    assert ctx.runtime_dir == "/run" and ctx.credentials_dir == "/run/credentials"
    assert ctx.architecture and "_" not in ctx.architecture
    assert ctx.kernel_release


def test_from_host_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/xdg/run")
    monkeypatch.setenv("XDG_STATE_HOME", "/xdg/state")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    monkeypatch.setenv("TMPDIR", "/scratch")
    ctx = SpecifierContext.from_host(system=False)
    assert ctx.home == "/home/tester"
    assert ctx.runtime_dir == "/xdg/run"
    assert ctx.credentials_dir == "/xdg/run/credentials"
    assert ctx.state_dir == "/xdg/state"
    assert ctx.logs_dir == "/xdg/state/log"
    assert ctx.cache_dir == "/home/tester/.cache"
    assert ctx.config_dir == "/home/tester/.config"
    assert ctx.tmp_dir == ctx.var_tmp_dir == "/scratch"


@pytest.mark.parametrize(
    ("machine", "arch"),
    [
        ("x86_64", "x86-64"),
        ("i686", "x86"),
        ("aarch64", "arm64"),
        ("armv7l", "arm"),
        ("armv7b", "arm-be"),
        ("ppc64le", "ppc64-le"),
        ("riscv64", "riscv64"),
        ("s390x", "s390x"),
        ("sh4", "sh"),
        ("weird9000", "weird9000"),
    ],
)
def test_architecture_names(machine: str, arch: str) -> None:
    assert specifiers._architecture(machine) == arch


# ------------------------------------------------------------------ properties


@given(st.text(alphabet=st.characters(exclude_characters="%")))
def test_text_without_specifiers_is_identity(text: str) -> None:
    assert expand(text, "x.service") == text


@given(st.text())
def test_doubled_percent_is_literal(text: str) -> None:
    assert expand(text.replace("%", "%%"), "x.service") == text
