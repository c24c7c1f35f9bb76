"""``EnvironmentFile=`` parsing with systemd's ``load_env_file`` semantics.

The format looks like shell but is not shell, and people's files depend on
the differences, so this follows systemd's state machine
(``src/basic/env-file.c``) rather than ``shlex`` or a dotenv library:

* one ``KEY=value`` per line; blank lines, lines without ``=`` and lines whose
  first non-blank character is ``#`` or ``;`` are skipped, and a comment never
  continues onto the next line, even if it ends in a backslash;
* unquoted values lose leading and trailing whitespace; a backslash makes the
  next character literal, and backslash-newline joins lines *without* adding
  a space (unit files add one);
* ``'…'`` is literal and may span lines; in ``"…"`` only ``\\" \\\\ \\` \\$`` and
  backslash-newline are escapes, any other backslash is kept;
* quotes only open at the start of the value or right after a closing quote
  (``a"b"`` keeps its quotes), and whitespace after a closing quote is
  dropped (``"sevenval" #x`` is ``sevenval#x``);
* there is no ``$VAR`` expansion and ``export`` is not a keyword
  (``export X=1`` has the key ``export X``, which the service later drops);
* a later assignment of the same key replaces the earlier one *in place*;
* a NUL byte anywhere fails the whole file (systemd 252 returns EBADMSG);
* invalid UTF-8 (including Unicode noncharacters such as U+FFFE) in a key or
  value that gets assigned fails the whole file.

systemd ≥ 254 behaviour is implemented for comments ending in a backslash
(252 let such a comment swallow the next line); the upstream tests, and hence
the shared vectors, expect the newer rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from flotte.unit.errors import ValueParseError
from flotte.unit.values import is_valid_env_name

__all__ = ["apply_env_file", "parse_env_file"]

_WHITESPACE: Final = " \t\n\r"
_NEWLINE: Final = "\n\r"
_COMMENTS: Final = "#;"
_SHELL_NEED_ESCAPE: Final = '"\\`$'

# Lines without any of these characters cannot continue onto the next line
# nor contain quoting, so they are handled with plain string operations.
_SPECIAL: Final = re.compile(r"[\\'\"\r]")


def _build_invalid_class() -> re.Pattern[str]:
    """Code points systemd's ``utf8_is_valid`` rejects.

    Surrogates stand for undecodable bytes (we decode with
    ``surrogateescape``) or come from a ``str`` that is not valid Unicode;
    the rest are the noncharacters systemd's ``unichar_is_valid`` refuses.
    """
    ranges = ["\ud800-\udfff", "\ufdd0-\ufdef"]
    ranges += [chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17)]
    return re.compile("[" + "".join(ranges) + "]")


_INVALID: Final = _build_invalid_class()

# States of systemd's parser (names kept so the code can be compared).
_PRE_KEY, _KEY, _PRE_VALUE, _VALUE, _VALUE_ESCAPE = range(5)
_SQ_VALUE, _DQ_VALUE, _DQ_VALUE_ESCAPE, _COMMENT, _COMMENT_ESCAPE = range(5, 10)


class _Collector:
    """The ordered result list with systemd's replace-in-place rule."""

    __slots__ = ("index", "items", "path", "text")

    def __init__(self, text: str, path: str | None) -> None:
        self.items: list[tuple[str, str]] = []
        self.index: dict[str, int] = {}
        self.text = text
        self.path = path

    def push(self, key: str, value: str, key_pos: int) -> None:
        if _INVALID.search(key) or _INVALID.search(value):
            self._fail(key, value, key_pos)
        # systemd joins KEY=VALUE and compares names up to the first '=' of
        # the joined string, so a key that itself contains '=' ("=" of "==")
        # replaces the entry named by its prefix.
        name = key.split("=", 1)[0]
        i = self.index.get(name)
        if i is None:
            self.index[name] = len(self.items)
            self.items.append((key, value))
        else:
            self.items[i] = (key, value)

    def _fail(self, key: str, value: str, key_pos: int) -> None:
        # We name the line the assignment starts on; systemd's message uses
        # its running line counter, which is already past a trailing newline.
        line = self.text.count("\n", 0, key_pos) + 1
        where = f"{self.path or 'n/a'}:{line}"
        if _INVALID.search(key):
            message = f"{where}: invalid UTF-8 in key '{_escape(key)}', ignoring."
        else:
            message = f"{where}: invalid UTF-8 value for key {key}: '{_escape(value)}', ignoring."
        raise ValueParseError(
            message,
            fix="save the file as UTF-8; Unicode noncharacters (U+FFFE, U+FFFF, "
            "U+FDD0…U+FDEF) are not allowed either",
        )


def _escape(s: str) -> str:
    """Like systemd's ``utf8_escape_invalid``: bad code points become U+FFFD."""
    return _INVALID.sub("\ufffd", s)


def parse_env_file(data: str | bytes, *, path: str | None = None) -> list[tuple[str, str]]:
    """Parse an ``EnvironmentFile=`` the way systemd's ``load_env_file`` does.

    Returns the raw ``(key, value)`` list in file order, a later duplicate
    having replaced the earlier entry in place.  Keys are *not* validated
    (``export nine`` stays); use :func:`apply_env_file` to apply the list the
    way a service does.  ``path`` is only used in error messages.  Raises
    :class:`ValueParseError` for a NUL byte, and for invalid UTF-8 or Unicode
    noncharacters in a key or value that is assigned (elsewhere, e.g. in
    comments, they are ignored, as in systemd).
    """
    if isinstance(data, bytes | bytearray | memoryview):
        text = bytes(data).decode("utf-8", "surrogateescape")
    else:
        text = data
    nul = text.find("\0")
    if nul >= 0:
        nul_line = text.count("\n", 0, nul) + 1
        raise ValueParseError(
            f"{path or 'n/a'}:{nul_line}: Failed to load environment file: Bad message "
            "(it contains a NUL byte)",
            fix="an environment file must be text; remove the NUL bytes",
        )
    out = _Collector(text, path)
    n = len(text)
    pos = 0
    while pos < n:
        end = text.find("\n", pos)
        if end < 0:
            end = n
        line = text[pos:end]
        if _SPECIAL.search(line) is None:
            _simple_line(line, pos, out)
            pos = end + 1
        else:
            pos = _state_machine(text, pos, out)
    return out.items


def _simple_line(line: str, pos: int, out: _Collector) -> None:
    """A line without backslashes, quotes or CR: no state carries over."""
    stripped = line.lstrip(" \t")
    if not stripped or stripped[0] in _COMMENTS:
        return
    # The first character always belongs to the key, even if it is '='.
    eq = stripped.find("=", 1)
    if eq < 0:
        return
    key = stripped[:eq].rstrip(" \t")
    value = stripped[eq + 1 :].strip(" \t")
    out.push(key, value, pos + len(line) - len(stripped))


def _state_machine(text: str, pos: int, out: _Collector) -> int:
    """Run systemd's character state machine from a line start at ``pos``.

    Returns the position of the first line start at which the machine is back
    in its initial state (or ``len(text)``), so the caller can resume the
    line-at-a-time fast path there.
    """
    n = len(text)
    state = _PRE_KEY
    key: list[str] = []
    value: list[str] = []
    key_pos = pos
    last_key_ws = -1  # index in key where trailing whitespace starts, -1: none
    last_value_ws = -1

    def finish(chop_value: bool) -> None:
        k = "".join(key[:last_key_ws] if last_key_ws >= 0 else key)
        v = "".join(value[:last_value_ws] if chop_value and last_value_ws >= 0 else value)
        out.push(k, v, key_pos)

    while pos < n:
        c = text[pos]
        pos += 1
        if state == _PRE_KEY:
            if c in _COMMENTS:
                state = _COMMENT
            elif c not in _WHITESPACE:
                state = _KEY
                key = [c]
                key_pos = pos - 1
                last_key_ws = -1
            elif c == "\n":
                return pos  # back at a line start in the initial state
        elif state == _KEY:
            if c in _NEWLINE:
                state = _PRE_KEY
                if c == "\n":
                    return pos
            elif c == "=":
                state = _PRE_VALUE
                value = []
                last_value_ws = -1
            else:
                if c not in _WHITESPACE:
                    last_key_ws = -1
                elif last_key_ws < 0:
                    last_key_ws = len(key)
                key.append(c)
        elif state == _PRE_VALUE:
            if c in _NEWLINE:
                finish(False)
                state = _PRE_KEY
                if c == "\n":
                    return pos
            elif c == "'":
                state = _SQ_VALUE
            elif c == '"':
                state = _DQ_VALUE
            elif c == "\\":
                state = _VALUE_ESCAPE
            elif c not in _WHITESPACE:
                state = _VALUE
                value.append(c)
        elif state == _VALUE:
            if c in _NEWLINE:
                finish(True)
                state = _PRE_KEY
                if c == "\n":
                    return pos
            elif c == "\\":
                state = _VALUE_ESCAPE
                last_value_ws = -1
            else:
                if c not in _WHITESPACE:
                    last_value_ws = -1
                elif last_value_ws < 0:
                    last_value_ws = len(value)
                value.append(c)
        elif state == _VALUE_ESCAPE:
            state = _VALUE
            if c not in _NEWLINE:  # an escaped newline is eaten entirely
                value.append(c)
        elif state == _SQ_VALUE:
            if c == "'":
                state = _PRE_VALUE
            else:
                value.append(c)
        elif state == _DQ_VALUE:
            if c == '"':
                state = _PRE_VALUE
            elif c == "\\":
                state = _DQ_VALUE_ESCAPE
            else:
                value.append(c)
        elif state == _DQ_VALUE_ESCAPE:
            state = _DQ_VALUE
            if c in _SHELL_NEED_ESCAPE:
                value.append(c)
            elif c != "\n":  # like the shell, keep the backslash of "\x"
                value.append("\\")
                value.append(c)
        elif state == _COMMENT:
            if c == "\\":
                state = _COMMENT_ESCAPE
            elif c in _NEWLINE:
                state = _PRE_KEY
                if c == "\n":
                    return pos
        else:  # _COMMENT_ESCAPE (systemd ≥ 254: a comment never continues)
            if c in _NEWLINE:
                state = _PRE_KEY
                if c == "\n":
                    return pos
            else:
                state = _COMMENT
    if state in (_PRE_VALUE, _VALUE, _VALUE_ESCAPE, _SQ_VALUE, _DQ_VALUE, _DQ_VALUE_ESCAPE):
        finish(state == _VALUE)
    return pos


def apply_env_file(env: dict[str, str], pairs: Iterable[tuple[str, str]]) -> list[str]:
    """Apply parsed pairs to ``env`` as a service does; return the dropped keys.

    Entries whose key is not a valid variable name (``export nine``,
    ``1ABC``, ``A-B``) are skipped, and returned in order so the caller can
    warn ("Ignoring invalid environment assignment"), as systemd does.
    Existing keys keep their position in ``env``; later files win.
    """
    dropped: list[str] = []
    for key, value in pairs:
        if is_valid_env_name(key):
            env[key] = value
        else:
            dropped.append(key)
    return dropped
