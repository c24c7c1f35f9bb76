"""Exec*= splitting, run-time expansion and the word extractor, against the vectors."""

from __future__ import annotations

import pytest
from vectors import load_vectors

from flotte.unit import load_text
from flotte.unit.execline import expand_argv, parse_exec
from flotte.unit.words import Flags, WordError, extract_first_word, extract_first_word_and_warn

V = load_vectors()
EXEC = V["exec_split"]
_FLAGS = {"none": Flags.NONE, "UNQUOTE": Flags.UNQUOTE, "CUNESCAPE": Flags.CUNESCAPE,
          "UNQUOTE|CUNESCAPE": Flags.UNQUOTE | Flags.CUNESCAPE,
          "CUNESCAPE then UNQUOTE|CUNESCAPE": None}


def _value(entry: dict) -> str:
    if "input_spec" in entry:
        return "".join(s * n for s, n in entry["input_spec"]["parts"])
    return entry["input"]


def _argv(cmd: dict) -> list[str]:
    if "argv_spec" in cmd:
        return ["".join(s * n for s, n in [part]) for part in cmd["argv_spec"]]
    return cmd["argv"]


@pytest.mark.parametrize("entry", EXEC, ids=[e["name"] for e in EXEC])
def test_exec_split_vector(entry: dict) -> None:
    if "unit_file" in entry:
        unit = load_text(entry["unit_file"], "probe.service")
        if entry.get("expected_error"):
            assert unit.load_state == "bad-setting"
        else:
            assert unit.load_state == "loaded", unit.diagnostics
            argvs = [c.argv for c in unit.exec_commands("ExecStart")]
            assert argvs == entry["expected_argvs"]
        msgs = [f"line {d.line}: {d.message}" if d.line else d.message
                for d in unit.diagnostics]
        for w in entry.get("expected_warnings", []):
            assert w in msgs, msgs
        return
    value = _value(entry)
    if entry.get("expected_reset"):
        assert value == ""
        unit = load_text(f"[Service]\nExecStart=/bin/a\nExecStart={value}\nExecStop=/bin/b\n",
                         "r.service")
        assert unit.exec_commands("ExecStart") == []
        return
    res = parse_exec(value)
    if entry.get("expected_error"):
        assert res.fatal is not None
        if value.endswith("\\"):
            return  # in a file, a trailing backslash would continue the line
        assert load_text(f"[Service]\nExecStart={value}\n", "e.service").load_state == \
            "bad-setting"
    elif entry.get("expected_ignored"):
        assert res.fatal is None and res.commands == [] and res.dropped
    else:
        assert res.fatal is None
        got = [(c.path, c.argv, c.ignore_failure) for c in res.commands]
        want = [(c["path"], _argv(c), c["ignore_failure"]) for c in entry["expected_commands"]]
        assert got == want


@pytest.mark.parametrize("entry", V["env_expand_argv"], ids=lambda e: e["name"])
def test_env_expand_argv_vector(entry: dict) -> None:
    out = expand_argv(entry["input_argv"], entry["env"])
    assert out.argv == entry["expected_argv"]
    if "expected_unset_names" in entry:
        assert sorted(out.unset) == entry["expected_unset_names"]
    if "expected_bad_names" in entry:
        assert sorted(out.bad) == entry["expected_bad_names"]


def _split(text: str, flags: Flags, warn: bool) -> list[str]:
    words, pos = [], 0
    while True:
        if warn:
            w, pos, _ = extract_first_word_and_warn(text, pos, flags)
        else:
            w, pos = extract_first_word(text, pos, flags)
        if w is None:
            return words
        words.append(w)


@pytest.mark.parametrize("entry", V["extract_word"], ids=lambda e: e["name"])
def test_extract_word_vector(entry: dict) -> None:
    warn = entry["function"] == "extract_first_word_and_warn"
    flags = _FLAGS[entry["flags"]]
    if flags is None:  # first word CUNESCAPE, second UNQUOTE|CUNESCAPE
        w1, pos = extract_first_word(entry["input"], 0, Flags.CUNESCAPE)
        w2, _ = extract_first_word(entry["input"], pos, Flags.UNQUOTE | Flags.CUNESCAPE)
        assert [w1, w2] == entry["expected_words"]
        return
    if entry.get("expected_error"):
        with pytest.raises(WordError):
            _split(entry["input"], flags, warn)
    else:
        assert _split(entry["input"], flags, warn) == entry["expected_words"]


def test_specifier_in_exec_path_is_fatal_unless_dash() -> None:
    assert load_text("[Service]\nExecStart=/bin/echo %z\n", "a.service").load_state == \
        "bad-setting"
    unit = load_text("[Service]\nType=oneshot\nRemainAfterExit=yes\n"
                     "ExecStart=-/bin/echo %z\nExecStop=/bin/true\n", "a.service")
    assert unit.load_state == "loaded", unit.diagnostics
    assert unit.exec_commands("ExecStart") == []


def test_specifiers_expand_per_word_after_unquoting() -> None:
    unit = load_text('[Service]\nExecStart=/bin/echo "%i x" %n\n', "t@a b.service"
                     .replace(" ", "-"))
    assert unit.exec_commands("ExecStart")[0].argv == ["/bin/echo", "a-b x", "t@a-b.service"]


def test_prefix_flags() -> None:
    (cmd,) = parse_exec(":+/bin/x $A").commands
    assert cmd.flags == {"no-env-expand", "fully-privileged"}
    (cmd,) = parse_exec("!!/bin/x").commands
    assert cmd.flags == {"ambient-magic"}
    (cmd,) = parse_exec("@/bin/x argv0 y").commands
    assert cmd.argv == ["argv0", "y"] and "separate-argv0" in cmd.flags
