"""Lexing unit files into ``(section, key, value, line)`` options.

Two dialects, because flotte meets unit files from two worlds:

``systemd``
    systemd's own ``config_parse`` (``src/shared/conf-parser.c``): a trailing
    odd backslash continues the line and becomes one space, comment lines
    inside a continuation are dropped, an empty line ends it, a line without
    ``=`` is a warning, a malformed section header makes the unit fail to
    load, lines may be up to 1 MiB.  This is the default: it is what the
    unit *means*.

``go-systemd``
    go-systemd's ``unit.DeserializeOptions``, the raw lexer CoreOS fleet used
    and therefore what fleet clients send.  Continuations are kept verbatim
    (backslash, newline and all), a line without ``=`` or a bad header is an
    error, and lines are limited to 2048 bytes.  Kept so that units arriving
    from fleet tooling hash and round-trip exactly as fleet computed them.

This layer only lexes: it does not know which keys exist.  Values are raw
(no specifier expansion, no unquoting); :mod:`flotte.unit.loader` applies the
option schema on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from flotte.unit.errors import Diagnostic, Severity

Dialect = Literal["systemd", "go-systemd"]
DIALECTS: tuple[str, ...] = ("systemd", "go-systemd")

#: systemd's LONG_LINE_MAX: a (logical) line of this many bytes or more is refused.
LONG_LINE_MAX = 1024 * 1024
#: go-systemd's SYSTEMD_LINE_MAX.
GO_LINE_MAX = 2048

_WS = " \t\n\r"
_EOL_RE = re.compile(r"\r\n|[\r\n\x00]")
# A line starting or ending with one of these needs the general path.
_SPECIAL_FIRST = frozenset(" \t#;[=")
_SPECIAL_LAST = frozenset("\\")
_FAST_MAX = 4096


class Option(NamedTuple):
    section: str
    key: str
    value: str
    line: int  # 1-based; for a continued line, the last physical line (as systemd reports)


@dataclass(slots=True)
class ParseResult:
    """What the lexer found.

    ``fatal`` is set when the file cannot be loaded at all (systemd: load
    state ``error``); ``options`` then holds what was read before the error,
    which ``flotte verify`` still shows.  ``masked`` means the file was empty.
    ``sections`` lists every section header as ``(name, line)``.
    """

    options: list[Option] = field(default_factory=list)
    sections: list[tuple[str, int]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    fatal: Diagnostic | None = None
    masked: bool = False
    error_kind: str | None = None  # "syntax" | "line_too_long" | "encoding"

    @property
    def ok(self) -> bool:
        return self.fatal is None


_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\\"']")


def string_is_safe(s: str) -> bool:
    """systemd's ``string_is_safe``: no control characters, quotes or backslashes.

    Section names and executable paths must pass it; the serializer checks
    it so that what it writes reads back.
    """
    return _UNSAFE.search(s) is None


def decode(data: bytes | str, result: ParseResult) -> str | None:
    """Decode file content as UTF-8, recording a fatal diagnostic if it is not text."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        result.fatal = Diagnostic(
            Severity.ERROR,
            f"File is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "unit files must be UTF-8 text",
            line,
            fix="convert the file to UTF-8 (e.g. iconv -t utf-8) or check that it is a unit file",
        )
        result.error_kind = "encoding"
        return None


def parse(data: bytes | str, dialect: Dialect = "systemd") -> ParseResult:
    """Lex a unit file.  Never raises for any input; problems are diagnostics."""
    result = ParseResult()
    text = decode(data, result)
    if text is None:
        return result
    if dialect == "go-systemd":
        _parse_go(text, result)
        return result
    if dialect != "systemd":
        raise ValueError(f"unknown unit file dialect {dialect!r}; use one of {DIALECTS}")
    if not text:
        result.masked = True
        return result
    _parse_systemd(text, result)
    return result


def _fatal(result: ParseResult, message: str, line: int, kind: str, fix: str | None) -> None:
    result.fatal = Diagnostic(Severity.ERROR, message, line, fix=fix)
    result.error_kind = kind


def _parse_systemd(text: str, result: ParseResult) -> None:
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text or "\x00" in text:
        lines = _EOL_RE.split(text)
    else:
        lines = text.split("\n")
    # A final newline does not start another line.
    if lines and lines[-1] == "":
        lines.pop()

    options = result.options
    diags = result.diagnostics
    section: str | None = None
    cont: str | None = None
    lineno = 0
    for raw in lines:
        lineno += 1
        # Fast path: an ordinary "Key=value" line outside a continuation.
        if cont is None and raw and raw[0] not in _SPECIAL_FIRST and \
                raw[-1] not in _SPECIAL_LAST and section is not None:
            eq = raw.find("=")
            if eq > 0 and len(raw) < _FAST_MAX:
                options.append(Option(section, raw[:eq].rstrip(_WS),
                                      raw[eq + 1:].strip(_WS), lineno))
                continue
        n = len(raw)
        if n >= LONG_LINE_MAX // 4 and len(raw.encode("utf-8")) >= LONG_LINE_MAX:
            _fatal(result, f"Line too long (more than {LONG_LINE_MAX} bytes)", lineno,
                   "line_too_long", "split the value over several lines ending in '\\'")
            return
        # Comment lines are skipped entirely, even inside a continuation.
        first = raw.lstrip(_WS)
        if first and first[0] in "#;":
            continue
        if cont is not None:
            if len(cont) + n > LONG_LINE_MAX and \
                    len(cont.encode("utf-8")) + len(raw.encode("utf-8")) > LONG_LINE_MAX:
                _fatal(result, f"Continuation line too long (more than {LONG_LINE_MAX} bytes)",
                       lineno, "line_too_long", "shorten the value")
                return
            p = cont + raw
        else:
            p = raw
        if p.endswith("\\"):
            run = len(p) - len(p.rstrip("\\"))
            if run & 1:
                cont = p[:-1] + " "
                continue
        cont = None
        section = _parse_line(p, lineno, section, result, options, diags)
        if result.fatal is not None:
            return
    if cont is not None:
        # systemd parses a continuation left open at EOF as the next line.
        _parse_line(cont, lineno + 1, section, result, options, diags)


def _parse_line(
    p: str,
    lineno: int,
    section: str | None,
    result: ParseResult,
    options: list[Option],
    diags: list[Diagnostic],
) -> str | None:
    line = p.strip(_WS)
    if not line or line[0] in "#;":
        return section
    if line[0] == "[":
        if line[-1] != "]":
            _fatal(result, f"Invalid section header '{line}'", lineno, "syntax",
                   "a section header is a whole line of the form [Name]")
            return section
        name = line[1:-1]
        if not string_is_safe(name):
            _fatal(result, f"Bad characters in section header '{line}'", lineno, "syntax",
                   "section names may not contain quotes, backslashes or control characters")
            return section
        result.sections.append((name, lineno))
        return name
    if section is None:
        diags.append(Diagnostic(Severity.WARNING, "Assignment outside of section. Ignoring.",
                                lineno, fix="move this line below a section header such as [Unit]"))
        return section
    eq = line.find("=")
    if eq < 0:
        diags.append(Diagnostic(Severity.WARNING, "Missing '=', ignoring line.", lineno,
                                fix="write settings as Key=value"))
        return section
    if eq == 0:
        diags.append(Diagnostic(Severity.WARNING, "Missing key name before '=', ignoring line.",
                                lineno, fix="write settings as Key=value"))
        return section
    options.append(Option(section, line[:eq].rstrip(_WS), line[eq + 1:].lstrip(_WS), lineno))
    return section


# --------------------------------------------------------------------------
# go-systemd dialect


def _parse_go(text: str, result: ParseResult) -> None:
    """A faithful port of go-systemd's ``DeserializeOptions`` state machine.

    It works on UTF-8 bytes because the 2048-byte limit is a byte limit and
    is checked (as in Go) whenever the lexer is about to take a step and at
    least 2048 bytes remain: if none of the next 2048 bytes is ``\\r`` or
    ``\\n`` the line is too long.
    """
    data = text.encode("utf-8")
    n = len(data)
    pos = 0
    section = ""
    line_at = _LineCounter(data)

    def too_long(at: int) -> bool:
        if n - at < GO_LINE_MAX:
            return False
        window = data[at : at + GO_LINE_MAX]
        return b"\n" not in window and b"\r" not in window

    def fail(msg: str, at: int, kind: str = "syntax") -> None:
        _fatal(result, msg, line_at(at), kind, None)

    def to_eol(at: int) -> tuple[bytes, int, bool]:
        nl = data.find(b"\n", at)
        if nl < 0:
            line, nxt, eof = data[at:], n, True
        else:
            line, nxt, eof = data[at : nl + 1], nl + 1, False
        # Go: TrimSuffix("\r") then TrimSuffix("\n") -- so a CRLF line keeps its "\r".
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.endswith(b"\n"):
            line = line[:-1]
        return line, nxt, eof

    def ignore_line(at: int) -> int:
        while True:
            line, at, eof = to_eol(at)
            if line.endswith(b" "):  # Go trims exactly one trailing space here
                line = line[:-1]
            if not line.endswith(b"\\") or eof:
                return at

    state = "next_section"
    while True:
        if too_long(pos):
            fail(f"line too long (max {GO_LINE_MAX} bytes)", pos, "line_too_long")
            return
        if pos >= n:
            return
        if state in ("next_section", "section_or_option"):
            ch = data[pos : pos + 1]
            # Decode one UTF-8 rune.
            rl = _rune_len(data[pos])
            rune = data[pos : pos + rl].decode("utf-8", "replace")
            if ch == b"[":
                end = data.find(b"]", pos + 1)
                if end < 0:
                    fail("unable to find end of section", pos)
                    return
                name = data[pos + 1 : end].decode("utf-8")
                garbage, pos, _ = to_eol(end + 1)
                if garbage.strip():
                    fail(f"found garbage after section name {name}: {garbage.strip()!r}", end)
                    return
                section = name
                result.sections.append((name, line_at(end)))
                state = "section_or_option"
                continue
            if ch in (b"#", b";"):
                pos = ignore_line(pos + 1)
                continue
            if state == "next_section":
                # Anything before the first section is skipped up to '[' or a comment.
                pos += rl
                continue
            if rune.isspace():
                pos += rl
                continue
            # Option name up to '='.
            start = pos
            while True:
                if pos >= n:
                    fail("unexpected EOF while parsing option name", pos)
                    return
                b = data[pos]
                if b in (0x0A, 0x0D):
                    fail("unexpected newline encountered while parsing option name", pos)
                    return
                if b == 0x3D:
                    break
                pos += 1
            name = data[start:pos].decode("utf-8").strip()
            opt_line = line_at(start)
            pos += 1
            parts: list[bytes] = []
            while True:
                if too_long(pos):
                    fail(f"line too long (max {GO_LINE_MAX} bytes)", pos, "line_too_long")
                    return
                line, pos, eof = to_eol(pos)
                if not line.strip():
                    break
                parts.append(line)
                if not line.endswith(b"\\"):
                    break
                if not eof:
                    parts.append(b"\n")
                if eof:
                    break
            val = b"".join(parts).decode("utf-8")
            val = val.strip() + "\n" if val.endswith("\n") else val.strip()
            result.options.append(Option(section, name, val, opt_line))
            continue


def _rune_len(b: int) -> int:
    if b < 0x80:
        return 1
    if b >> 5 == 0b110:
        return 2
    if b >> 4 == 0b1110:
        return 3
    if b >> 3 == 0b11110:
        return 4
    return 1


class _LineCounter:
    """Maps byte offsets to 1-based line numbers (for diagnostics only)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self, at: int) -> int:
        return self.data.count(b"\n", 0, at) + 1
