"""Template resource files: every key, confd's quirks, and errors that name file and line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flotte.discovery.confd.resource import (
    ResourceError,
    TemplateResource,
    covers,
    find_resources,
    load_confdir,
    load_resource,
    parse_mode,
    parse_resource,
    union_keys,
)

CONFDIR = Path("/etc/confd")
TOML = Path("/etc/confd/conf.d/app.toml")

FULL = """\
[template]
src = "nginx.conf.tmpl"
dest = "/etc/nginx/nginx.conf"
keys = ["/nginx", "/services/apache"]
prefix = "/production"
uid = 33
gid = 34
mode = "0640"
check_cmd = "/usr/sbin/nginx -t -c {{.src}}"
reload_cmd = "/usr/sbin/service nginx reload"
"""


def parse(text: str, **kw: Any) -> TemplateResource:
    return parse_resource(text, TOML, CONFDIR, euid=1000, egid=1001, **kw)


def test_every_key() -> None:
    res = parse_resource(FULL, TOML, CONFDIR)
    assert res.src == Path("/etc/confd/templates/nginx.conf.tmpl")
    assert res.dest == Path("/etc/nginx/nginx.conf")
    assert res.keys == ("/nginx", "/services/apache")
    assert res.prefix == "/production"
    assert (res.uid, res.gid, res.mode) == (33, 34, 0o640)
    assert res.check_cmd == "/usr/sbin/nginx -t -c {{.src}}"
    assert res.reload_cmd == "/usr/sbin/service nginx reload"
    assert res.full_keys == ("/production/nginx", "/production/services/apache")
    assert res.warnings == ()
    assert res.name == "conf.d/app.toml"


def test_defaults() -> None:
    res = parse('[template]\nsrc = "a.tmpl"\ndest = "/tmp/a"\n')
    assert res.keys == ()
    assert res.prefix == "/"
    assert (res.uid, res.gid) == (1000, 1001)
    assert res.mode is None
    assert res.check_cmd is None and res.reload_cmd is None


def test_uid_minus_one_means_effective_id() -> None:
    res = parse('[template]\nsrc = "a"\ndest = "/tmp/a"\nuid = -1\ngid = 0\n')
    assert (res.uid, res.gid) == (1000, 0)


def test_keys_are_case_insensitive_like_burntsushi_toml() -> None:
    res = parse('[Template]\nSRC = "a.tmpl"\nDest = "/tmp/a"\nKEYS = ["/k"]\nCheck_Cmd = "true"\n')
    assert res.src.name == "a.tmpl"
    assert res.keys == ("/k",)
    assert res.check_cmd == "true"


def test_same_key_twice_in_different_case_is_an_error() -> None:
    with pytest.raises(ResourceError) as err:
        parse('[template]\nsrc = "a"\nSRC = "b"\ndest = "/tmp/a"\n')
    assert err.value.line == 3
    assert "same key" in str(err.value)


def test_src_is_always_under_templates() -> None:
    res = parse('[template]\nsrc = "/abs/a.tmpl"\ndest = "/tmp/a"\n')
    assert res.src == Path("/etc/confd/templates/abs/a.tmpl")
    res = parse('[template]\nsrc = "sub/a.tmpl"\ndest = "/tmp/a"\n')
    assert res.src == Path("/etc/confd/templates/sub/a.tmpl")


def test_seed_owner_is_ignored_with_a_warning() -> None:
    seed = Path(__file__).parents[2] / "examples/seed/ch10/confd/conf.d/nginx.toml"
    # the seed's reload_cmd has unescaped quotes inside a basic string: invalid TOML,
    # and confd itself fails on it too; check the error points at that line.
    with pytest.raises(ResourceError) as err:
        load_resource(seed, seed.parents[1])
    assert err.value.line == 17
    assert str(err.value).startswith(f"{seed}:17: invalid TOML")
    fixed = seed.read_text(encoding="utf-8").replace(
        'reload_cmd = "echo -e "POST /containers/nginx.service/kill?signal=HUP HTTP/1.0\\r\\n" '
        '| nc -U /var/run/docker.sock"',
        "reload_cmd = 'true'")
    res = parse(fixed)
    assert res.keys == ("/services/apache",)
    assert res.mode == 0o644
    assert any("'owner' is ignored" in w and "line 13" in w
               for w in res.warnings)


def test_unknown_keys_warn_with_line() -> None:
    res = parse('[template]\nsrc = "a"\ndest = "/tmp/a"\nreload_command = "x"\n[other]\n')
    assert res.warnings == (
        "line 4: unknown key 'reload_command' is ignored (known: src, dest, keys, prefix, "
        "uid, gid, mode, check_cmd, reload_cmd)",
        "top-level 'other' is ignored: only [template] is read")


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nmode = 0644\n', 4, "invalid TOML"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nmode = 420\n', 4, 'mode must be a string, not '
                                                              'an integer (quote it: mode = "0644")'),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nuid = "root"\n', 4, "uid must be a number"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\ngid = true\n', 4, "gid must be a number"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nkeys = "/k"\n', 4, "keys must be an array"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nkeys = ["/k", 1]\n', 4, "keys must be an array"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nkeys = ["/k", true]\n', 4, "keys must be an array"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nmode = "rw-r--r--"\n', 4, "not a number"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nmode = "0999"\n', 4, "base-8"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nmode = "077777"\n', 4, "0o7777"),
    ('[template]\ndest = "/tmp/a"\n', 1, "empty src template"),
    ('[template]\nsrc = ""\ndest = "/tmp/a"\n', 2, "empty src template"),
    ('[template]\nsrc = "a"\n', 1, "empty dest"),
    ('\n[template]\nsrc = "a"\ndest = "/tmp/a"\ncheck_cmd = [1]\n', 5, "check_cmd must be a "
                                                                       "string"),
    ('[template]\nsrc = "a"\ndest = "/tmp/a"\nprefix = 3\n', 4, "prefix must be a string"),
    ('[template]\nsrc = "a\ndest = "/tmp/a"\n', 2, "invalid TOML"),
    ('template = 3\n', 1, "must be a table"),
])
def test_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ResourceError) as err:
        parse(text)
    assert err.value.line == line, str(err.value)
    assert str(err.value).startswith(f"{TOML}:{line}: ")
    assert words in str(err.value)


def test_file_without_template_table() -> None:
    with pytest.raises(ResourceError) as err:
        parse('src = "a"\n')
    assert str(err.value) == (f"{TOML}: no [template] table; a resource file needs [template] "
                              'with at least src = "<file in templates/>" and dest = "<path>"')


@pytest.mark.parametrize(("text", "mode", "warns"), [
    ("0644", 0o644, False),
    ("0755", 0o755, False),
    ("00644", 0o644, False),
    ("0x1a4", 0o644, False),
    ("0X1A4", 0o644, False),
    ("0o644", 0o644, False),
    ("0b110100100", 0o644, False),
    ("0_644", 0o644, False),
    ("0", 0, False),
    ("7", 7, False),
    ("644", 644, True),       # decimal, as Go's ParseUint(s, 0, 32) reads it: 0o1204
    ("420", 0o644, True),
    ("04755", 0o4755, False),
])
def test_mode_base_detection_like_go(text: str, mode: int, warns: bool) -> None:
    value, warning = parse_mode(text)
    assert value == mode
    assert (warning is not None) == warns
    if warns:
        assert f"decimal number {mode}" in (warning or "")


@pytest.mark.parametrize("text", ["", " 0644", "0644 ", "-1", "+644", "0x", "1__0", "0_",
                                  "abc", "0o8"])
def test_bad_modes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mode(text)


def test_decimal_mode_loads_with_a_warning() -> None:
    res = parse('[template]\nsrc = "a"\ndest = "/tmp/a"\nmode = "644"\n')
    assert res.mode == 644
    assert res.warnings == (
        'line 4: mode = "644" is read as the decimal number 644 = octal 1204 (-w----r-T), '
        'as confd does; write "0644" for octal',)


@pytest.mark.parametrize(("resource", "global_", "join", "want"), [
    ("", "", False, "/"),
    ("app", "", False, "/app"),
    ("/app", "/prod", False, "/prod"),        # v0.12+: the global prefix replaces
    ("/app", "prod", False, "/prod"),
    ("/app", "/prod", True, "/prod/app"),     # <= v0.11: joined
    ("", "/prod", True, "/prod"),
])
def test_prefix_rules(resource: str, global_: str, join: bool, want: str) -> None:
    text = f'[template]\nsrc = "a"\ndest = "/tmp/a"\nprefix = "{resource}"\n'
    res = parse(text, global_prefix=global_, prefix_join=join)
    assert res.prefix == want


def test_full_keys_are_path_joined() -> None:
    res = parse('[template]\nsrc = "a"\ndest = "/tmp/a"\nprefix = "/p/"\n'
                'keys = ["/a/", "b", "//c//d", "", "/"]\n')
    assert res.full_keys == ("/p/a", "/p/b", "/p/c/d", "/p", "/p")


def test_watches_by_segment_not_string_prefix() -> None:
    res = parse('[template]\nsrc = "a"\ndest = "/tmp/a"\nkeys = ["/app/upstream"]\n')
    assert res.watches("/app/upstream")
    assert res.watches("/app/upstream/a/b")
    assert not res.watches("/app/upstream2/x")
    assert not res.watches("/app")
    assert covers("/", "/anything/at/all")


def test_union_keys_drops_covered_keys() -> None:
    a = parse('[template]\nsrc = "a"\ndest = "/tmp/a"\nkeys = ["/s/a", "/s/b/c", "/t"]\n')
    b = parse('[template]\nsrc = "a"\ndest = "/tmp/a"\nkeys = ["/s/b", "/s/a-x"]\n')
    assert union_keys([a, b]) == ["/s/a", "/s/a-x", "/s/b", "/t"]


def test_walk_order_recursion_and_glob(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    for name in ("b.toml", "a/z.toml", "a/y.toml", "c.toml", "footoml", "d.toml.bak",
                 "a/b/x.toml", ".hidden.toml"):
        (conf_d / name).parent.mkdir(parents=True, exist_ok=True)
        (conf_d / name).write_text("")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.toml").write_text("")
    os.symlink(tmp_path / "elsewhere", conf_d / "linked")  # confd's Walk does not follow it
    found = [str(p.relative_to(conf_d)) for p in find_resources(tmp_path)]
    assert found == [".hidden.toml", "a/b/x.toml", "a/y.toml", "a/z.toml", "b.toml", "c.toml",
                     "footoml"]


def test_missing_conf_d(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match=r"missing conf\.d directory"):
        find_resources(tmp_path)
    with pytest.raises(ResourceError, match="confdir does not exist"):
        find_resources(tmp_path / "nope")


def test_load_confdir_keeps_good_resources(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.toml").write_text('[template]\nsrc = "a"\ndest = "/tmp/a"\n')
    (tmp_path / "conf.d" / "b.toml").write_text('[template]\nsrc = "b"\n')
    (tmp_path / "conf.d" / "c.toml").write_bytes(b'[template]\nsrc = "\xff"\n')
    loaded = load_confdir(tmp_path)
    assert [r.name for r in loaded.resources] == ["conf.d/a.toml"]
    assert [(e.path.name, e.line) for e in loaded.errors] == [("b.toml", 1), ("c.toml", 2)]
    assert "not UTF-8" in str(loaded.errors[1])
