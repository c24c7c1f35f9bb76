"""Unit names, templates and escaping (flotte.unit.names).

Every entry of ``unit_name`` in unit-vectors.json is a test case; entries whose
note says "go-systemd semantics" run with ``strict=False``.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vectors import load_vectors

from flotte.unit import names
from flotte.unit.names import InvalidUnitName, NameFlags

UNIT_NAME_VECTORS: list[dict[str, Any]] = load_vectors()["unit_name"]


def _is_go(entry: dict[str, Any]) -> bool:
    return "go-systemd semantics" in entry.get("note", "")


def _vector_id(entry: dict[str, Any]) -> str:
    flavour = "go" if _is_go(entry) else "sd"
    text = entry["input"]
    if len(text) > 30:
        text = text[:30] + "..."
    return f"{entry['op']}-{flavour}-{text!r}"


def _run(entry: dict[str, Any]) -> object:
    op = entry["op"]
    text = entry["input"]
    strict = not _is_go(entry)
    if op == "is_valid":
        return names.is_valid(text, NameFlags[entry["flags"]])
    if op == "replace_instance":
        return names.replace_instance(text, entry["instance"])
    if op == "instance":
        return names.instance(text)
    if op == "prefix":
        return names.prefix(text)
    if op == "template":
        return names.template_of(text)
    if op == "escape":
        return names.escape(text)
    if op == "unescape":
        return names.unescape(text, strict=strict)
    if op == "path_escape":
        return names.path_escape(text, strict=strict)
    if op == "path_unescape":
        return names.path_unescape(text, strict=strict)
    if op == "from_path":
        return names.from_path(text, entry["suffix"])
    if op == "from_path_instance":
        return names.from_path_instance(entry["prefix"], text, entry["suffix"])
    if op == "template_escape":
        return names.template_escape(entry["template"], text, path=entry.get("path", False))
    raise AssertionError(f"vector with unknown op {op!r}: {entry}")


def _mislabelled_path_flag(entry: dict[str, Any]) -> bool:
    """The one vector whose ``path`` flag contradicts the tool it cites.

    ``template_escape`` of ``/dev/sda`` says ``"path": true`` →
    ``foo@-dev-sda.service``, but systemd-escape 252 prints that only
    *without* ``--path``; ``systemd-escape --template=foo@.service --path
    /dev/sda`` prints ``foo@dev-sda.service`` (path escaping drops the leading
    ``/``, exactly as the ``from_path_instance`` vectors show: ``waldo`` +
    ``/waldo`` → ``waldo@waldo.mount``).  Checked with the local binary.
    """
    return (
        entry["op"] == "template_escape"
        and entry.get("path") is True
        and entry["expected"] == entry["template"].replace("@", "@" + names.escape(entry["input"]))
    )


@pytest.mark.parametrize("entry", UNIT_NAME_VECTORS, ids=_vector_id)
def test_unit_name_vector(entry: dict[str, Any]) -> None:
    if _mislabelled_path_flag(entry):
        # The recorded output is plain mode's; path mode gives what systemd-escape --path does.
        template, value = entry["template"], entry["input"]
        assert names.template_escape(template, value) == entry["expected"]
        assert names.template_escape(template, value, path=True) == template.replace(
            "@", "@" + names.path_escape(value)
        )
        return
    if entry.get("expected_error"):
        with pytest.raises(InvalidUnitName):
            _run(entry)
    else:
        assert _run(entry) == entry["expected"]


def test_vectors_cover_every_op() -> None:
    ops = {e["op"] for e in UNIT_NAME_VECTORS}
    assert ops == {
        "is_valid",
        "replace_instance",
        "instance",
        "prefix",
        "template",
        "escape",
        "unescape",
        "path_escape",
        "path_unescape",
        "from_path",
        "from_path_instance",
        "template_escape",
    }


# ------------------------------------------------------------------ validity


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("a" * 247 + ".service", True),  # 255 bytes
        ("a" * 248 + ".service", False),  # 256 bytes
        ("föo.service", False),
        ("foo.service\n", False),
        ("foo.Service", False),
        ("foo.busname", False),  # fleet knows it, systemd no longer does
        ("-.mount", True),
        ("dev-sda\\x2d1.device", True),
        ("foo@bar@.service", True),  # instance "bar@"
        ("foo@@.service", True),  # instance "@"
        ("foo.service.service", True),
    ],
)
def test_is_valid_edges(name: str, valid: bool) -> None:
    assert names.is_valid(name) is valid


def test_is_valid_no_flags() -> None:
    assert names.is_valid("foo.service", NameFlags(0)) is False


def test_split_parts() -> None:
    plain = names.split("web.service")
    assert (plain.prefix, plain.instance, plain.suffix) == ("web", None, ".service")
    assert plain.is_plain and not plain.is_template and not plain.is_instance
    assert plain.template is None
    assert plain.name == str(plain) == "web.service"
    assert plain.stem == "web"
    assert plain.type == "service"
    assert plain.flags is NameFlags.PLAIN

    tmpl = names.split("web@.service")
    assert tmpl.instance == "" and tmpl.is_template and not tmpl.is_instance
    assert tmpl.template == "web@.service"
    assert tmpl.stem == "web@"

    inst = names.split("web@a@b.socket")
    assert (inst.prefix, inst.instance, inst.suffix) == ("web", "a@b", ".socket")
    assert inst.is_instance and inst.template == "web@.socket"
    assert inst.name == "web@a@b.socket"
    assert inst.flags is NameFlags.INSTANCE


def test_split_with_flags() -> None:
    assert names.split("foo@bar.service", NameFlags.INSTANCE).instance == "bar"
    with pytest.raises(InvalidUnitName) as exc:
        names.split("foo@.service", NameFlags.PLAIN | NameFlags.INSTANCE)
    assert "template name" in str(exc.value)
    assert "a plain unit name or an instance name is required" in str(exc.value)


def test_message_for_bad_character() -> None:
    with pytest.raises(InvalidUnitName) as exc:
        names.split("foo bar.service")
    assert str(exc.value) == (
        "unit name 'foo bar.service' contains ' ': unit names may only use ASCII letters, "
        "digits and ':-_.\\@'; escape other characters with `flotte escape`"
    )
    assert exc.value.name == "foo bar.service"
    assert exc.value.fix == "escape other characters with `flotte escape`"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "is empty"),
        ("x/y.service", "contains '/'"),
        ("foo@%i.service", "contains '%'"),
        ("foo", "has no type suffix"),
        ("foo.bar", "unknown type suffix '.bar'"),
        (".service", "empty prefix"),
        ("@foo.service", "starts with '@'"),
        ("a" * 300 + ".service", "at most 255 bytes"),
        ("tab\there.service", "character U+0009"),
    ],
)
def test_invalid_name_messages(name: str, fragment: str) -> None:
    with pytest.raises(InvalidUnitName) as exc:
        names.split(name)
    assert fragment in str(exc.value)
    assert exc.value.fix
    assert isinstance(exc.value, ValueError)


# -------------------------------------------------------- templates/instances


def test_prefix_instance_template() -> None:
    assert names.prefix("foo@bar.service") == "foo"
    assert names.instance("foo@bar.service") == "bar"
    assert names.instance("foo@.service") == ""
    assert names.instance("foo.service") is None
    assert names.template_of("foo@bar.service") == "foo@.service"
    assert names.template_of("foo@.service") == "foo@.service"


def test_replace_instance() -> None:
    assert names.replace_instance("foo@.service", "waldo") == "foo@waldo.service"
    assert names.replace_instance("foo@xyz.service", "waldo") == "foo@waldo.service"
    assert names.replace_instance("foo@.service", "a@b") == "foo@a@b.service"
    with pytest.raises(InvalidUnitName, match="instance name is empty"):
        names.replace_instance("foo@.service", "")
    with pytest.raises(InvalidUnitName, match="contains '/'"):
        names.replace_instance("foo@.service", "a/b")
    with pytest.raises(InvalidUnitName, match="at most 255"):
        names.replace_instance("foo@.service", "x" * 250)


# ------------------------------------------------------------------- escaping


def test_escape_examples() -> None:
    assert names.escape("/dev/sda") == "-dev-sda"
    assert names.escape("a-b\\c") == "a\\x2db\\x5cc"
    assert names.escape(".") == "\\x2e"
    assert names.escape("Ab:_.9") == "Ab:_.9"


def test_escape_undecodable_bytes_round_trip() -> None:
    raw = b"/srv/\xff\xfe"
    text = os.fsdecode(raw)
    assert names.escape(text) == "-srv-\\xff\\xfe"
    assert os.fsencode(names.unescape("-srv-\\xff\\xfe")) == raw


def test_escape_rejects_lone_surrogate() -> None:
    with pytest.raises(InvalidUnitName, match="surrogate"):
        names.escape("\ud800")


def test_unescape_strict_and_lenient() -> None:
    assert names.unescape("a-b\\x2dc") == "a/b-c"
    assert names.unescape("\\xc3\\xbcber") == "über"
    for bad in ("a\\xzz", "a\\", "a\\x4", "a\\y41", "\\X41"):
        with pytest.raises(InvalidUnitName, match="malformed escape"):
            names.unescape(bad)
        assert names.unescape(bad, strict=False) == bad.replace("-", "/")
    with pytest.raises(InvalidUnitName, match="NUL"):
        names.unescape("a\\x00b")
    assert names.unescape("a\\x00b", strict=False) == "a\x00b"
    assert names.unescape("\\x4A\\x4a") == "JJ"


def test_path_escape_flavours_differ_on_dot_components() -> None:
    assert names.path_escape("/.") == "-"
    assert names.path_escape("/.", strict=False) == "\\x2e"
    assert names.path_escape("/a/./b") == "a-b"
    assert names.path_escape("/a/./b", strict=False) == "a-.-b"
    assert names.path_escape("/foo/../bar", strict=False) == "foo-..-bar"


def test_path_escape_strict_errors() -> None:
    with pytest.raises(InvalidUnitName, match=r"'\.\.' component"):
        names.path_escape("/foo/../bar")
    with pytest.raises(InvalidUnitName, match="does not name"):
        names.path_escape("./")
    with pytest.raises(InvalidUnitName, match="at most 255 bytes"):
        names.path_escape("/" + "x" * 256)
    with pytest.raises(InvalidUnitName, match="shorter than 4096"):
        names.path_escape("/x" * 2100)
    assert names.path_escape("relative/path") == "relative-path"


@pytest.mark.parametrize(
    ("escaped", "fragment"),
    [
        ("-foo", "leading '/'"),
        ("\\x2ffoo", "leading '/'"),
        ("foo-.-bar", "'.' path component"),
        ("foo-\\x2e\\x2e", "'..' component"),
    ],
)
def test_path_unescape_strict_errors(escaped: str, fragment: str) -> None:
    with pytest.raises(InvalidUnitName, match=fragment):
        names.path_unescape(escaped)
    assert names.path_unescape(escaped, strict=False).startswith("/")


def test_lenient_path_unescape_does_not_double_the_slash() -> None:
    assert names.path_unescape("-foo", strict=False) == "/foo"
    assert names.path_unescape("", strict=False) == "/"


def test_from_path_errors() -> None:
    with pytest.raises(InvalidUnitName, match="with the dot"):
        names.from_path("/waldo", "mount")
    with pytest.raises(InvalidUnitName, match="not valid"):
        names.from_path("/waldo", ".bogus")
    with pytest.raises(InvalidUnitName, match="at most 255"):
        names.from_path("/" + "/".join(["x" * 100] * 3), ".mount")
    with pytest.raises(InvalidUnitName, match="prefixes may only use"):
        names.from_path_instance("a@b", "/x", ".mount")
    with pytest.raises(InvalidUnitName, match="prefix is empty"):
        names.from_path_instance("", "/x", ".mount")


def test_template_escape() -> None:
    assert names.template_escape("foo@.service", "a b") == "foo@a\\x20b.service"
    assert names.template_escape("foo@.service", "/", path=True) == "foo@-.service"
    with pytest.raises(InvalidUnitName, match="template name is required"):
        names.template_escape("foo@bar.service", "x")
    with pytest.raises(InvalidUnitName, match="empty"):
        names.template_escape("foo@.service", "")


# ------------------------------------------------------------ safety & fleet


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../etc/passwd.service", "a/b.service", "x\x00.service", "x\n.service"],
)
def test_check_safe_rejects_path_tricks(name: str) -> None:
    with pytest.raises(InvalidUnitName):
        names.check_safe(name)


def test_check_safe_accepts_systemd_and_fleet_names() -> None:
    assert names.check_safe("web@1.service") == "web@1.service"
    assert names.check_safe("foo.snapshot") == "foo.snapshot"  # fleet-only type
    assert names.check_safe("-.mount") == "-.mount"
    with pytest.raises(InvalidUnitName, match="at most 255 bytes"):
        names.check_safe("a" * 248 + ".service")  # fleet allows 256, NAME_MAX does not
    with pytest.raises(InvalidUnitName, match="invalid unit type"):
        names.check_safe("foo.txt")


@pytest.mark.parametrize(
    ("name", "fleet_message"),
    [
        ("", "unit name cannot be empty"),
        ("a" * 250 + ".service", "unit name exceeds maximum length (256)"),
        ("foo", 'unit name must contain "."'),
        ("foo.", 'unit name cannot end in "."'),
        ("foo.txt", 'invalid unit type: "txt"'),
        ("foo@bar.mount", 'unit type "mount" cannot be a template or instance'),
        ("foo bar.service", "invalid character ' ' in unit name"),
        ("@foo.service", 'unit name cannot start in "@"'),
    ],
)
def test_fleet_api_check_rejects(name: str, fleet_message: str) -> None:
    with pytest.raises(InvalidUnitName) as exc:
        names.fleet_api_check(name)
    assert exc.value.fleet_message == fleet_message
    assert fleet_message in str(exc.value)
    assert exc.value.fix


@pytest.mark.parametrize(
    "name",
    [
        "hello.service",
        "foo@.service",
        "foo@bar.timer",
        "foo.busname",
        "foo.snapshot",
        "foo@@.service",
        "a" * 248 + ".service",  # 256 bytes: fleet's limit, one more than systemd's
        ".service",  # fleet does not require a prefix
    ],
)
def test_fleet_api_check_accepts(name: str) -> None:
    names.fleet_api_check(name)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("hello", "hello.service"),
        ("hello.service", "hello.service"),
        ("foo.target", "foo.target.service"),
        ("foo.socket", "foo.socket"),
        ("x.automount", "x.automount"),
        ("units/web@.service", "web@.service"),
        ("/abs/dir/web@1.service", "web@1.service"),
        ("dir/", "dir.service"),
        ("", "..service"),
        ("/", "/.service"),
    ],
)
def test_fleetctl_unit_name(arg: str, expected: str) -> None:
    assert names.fleetctl_unit_name(arg) == expected


# ------------------------------------------------------------------ properties

# codec="utf-8" keeps lone surrogates out: they have no UTF-8 encoding.
_NO_NUL = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
_COMPONENT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=20
).filter(lambda c: c not in (".", ".."))


@given(_NO_NUL)
def test_unescape_inverts_escape(s: str) -> None:
    assert names.unescape(names.escape(s)) == s


@given(st.text())
def test_lenient_unescape_inverts_escape(s: str) -> None:
    assert names.unescape(names.escape(s), strict=False) == s


@given(st.text())
def test_escape_output_is_name_material(s: str) -> None:
    out = names.escape(s)
    assert not out.startswith(".")
    assert all(ch.isascii() and (ch.isalnum() or ch in ":_.-\\") for ch in out)
    if out and len(out) <= 200:
        assert names.is_valid(f"x@{out}.service", NameFlags.INSTANCE)


@given(st.lists(_COMPONENT, max_size=6))
def test_path_round_trip(components: list[str]) -> None:
    path = "/" + "/".join(components)
    assert names.path_unescape(names.path_escape(path)) == path
    lenient = names.path_escape(path, strict=False)
    assert lenient == names.path_escape(path)
    assert names.path_unescape(lenient, strict=False) == path


@given(st.lists(_COMPONENT, min_size=1, max_size=4))
def test_path_escape_ignores_redundant_slashes(components: list[str]) -> None:
    messy = "//" + "//./".join(components) + "/"
    assert names.path_escape(messy) == names.path_escape("/" + "/".join(components))


# ---------------------------------------------------------------------- oracle

_ORACLE_INPUTS = [
    "/dev/sda",
    "/.foo/.bar",
    "/srv/my data/über-cool",
    "///a//b/./c/",
    "-leading-dash",
    "back\\slash:colon_under.dot",
    "@at@",
]


@pytest.mark.oracle
@pytest.mark.parametrize("value", _ORACLE_INPUTS)
def test_matches_systemd_escape(value: str, require_binary) -> None:  # type: ignore[no-untyped-def]
    escape_bin = require_binary("systemd-escape", "systemd")

    def run(*args: str) -> str:
        out = subprocess.run(
            [escape_bin, *args, "--", value], capture_output=True, text=True, check=True
        )
        return out.stdout.rstrip("\n")

    assert names.escape(value) == run()
    assert names.unescape(names.escape(value)) == value
    assert names.template_escape("x@.service", value) == run("--template=x@.service")
    if value.startswith("/"):
        assert names.path_escape(value) == run("--path")
        assert names.template_escape("x@.service", value, path=True) == run(
            "--template=x@.service", "--path"
        )
