"""systemd's word splitter: ``extract_first_word`` and C-style unescaping.

Settings that take word lists (``Exec*=``, ``Environment=``,
``SuccessExitStatus=`` …) are split by this one function in systemd
(``src/basic/extract-word.c``), with different flags per setting.  Getting it
exactly right matters because users' unit files depend on its quirks:

* quotes may appear in the middle of a word and concatenate, shell-style
  (``"a"b'c'`` is ``abc``);
* C escapes are decoded *inside single quotes too* (``'\\n'`` is a newline);
* ``Exec*=`` lines retry a word that has an unknown escape with the escape
  kept verbatim (``\\w+`` stays ``\\w+``) and log a warning, instead of failing.

The implementation follows systemd's state machine rather than ``shlex``:
``shlex`` has neither C escapes nor the relaxed retry, and treats quotes
inside single quotes differently.
"""

from __future__ import annotations

import re
from enum import IntFlag

WHITESPACE = " \t\n\r"


class Flags(IntFlag):
    """The subset of systemd's ``ExtractFlags`` that unit settings use."""

    NONE = 0
    UNQUOTE = 1
    CUNESCAPE = 2
    UNESCAPE_RELAX = 4  # keep unknown escapes (and a trailing backslash) verbatim
    RELAX = 8  # tolerate unbalanced quotes / trailing backslash at end of input


class WordError(ValueError):
    """Unbalanced quoting or an invalid escape (systemd's ``-EINVAL``)."""


_PLAIN_WORD = re.compile(r"([^ \t\n\r'\"\\]+)(?:[ \t\n\r]+|\Z)")

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}
_HEX = "0123456789abcdefABCDEF"
_OCT = "01234567"


def _unichar_is_valid(cp: int) -> bool:
    if cp >= 0x110000:
        return False
    if 0xD800 <= cp <= 0xDFFF:
        return False
    if 0xFDD0 <= cp <= 0xFDEF:
        return False
    return (cp & 0xFFFE) != 0xFFFE


def cunescape_one(text: str, pos: int) -> tuple[str, int, bool] | None:
    """Decode the escape whose letter is at ``text[pos]`` (the backslash precedes it).

    Returns ``(decoded, consumed, eight_bit)`` or ``None`` when it is not a
    valid escape.  ``eight_bit`` means ``decoded`` is a raw byte (``\\xHH`` or
    octal), which the caller must join with neighbouring bytes so that
    ``\\xc3\\xbc`` becomes ``ü`` exactly as systemd's byte buffer does.
    NUL is never accepted (systemd passes ``accept_nul=false``).
    """
    c = text[pos] if pos < len(text) else ""
    if not c:
        return None
    simple = _SIMPLE_ESCAPES.get(c)
    if simple is not None:
        return simple, 1, False
    if c == "x":
        h = text[pos + 1 : pos + 3]
        if len(h) != 2 or h[0] not in _HEX or h[1] not in _HEX:
            return None
        v = int(h, 16)
        if v == 0:
            return None
        return chr(v), 3, v >= 0x80
    if c in ("u", "U"):
        n = 4 if c == "u" else 8
        h = text[pos + 1 : pos + 1 + n]
        if len(h) != n or any(ch not in _HEX for ch in h):
            return None
        v = int(h, 16)
        if v == 0 or not _unichar_is_valid(v):
            return None
        return chr(v), n + 1, False
    if c in _OCT:
        o = text[pos : pos + 3]
        if len(o) != 3 or any(ch not in _OCT for ch in o):
            return None
        v = int(o, 8)
        if v == 0 or v > 255:
            return None
        return chr(v), 3, True
    return None


def _finish_bytes(chars: list[str], raw: bool) -> str:
    word = "".join(chars)
    if not raw:
        return word
    # Raw bytes were stored as U+DC80..U+DCFF (surrogateescape); re-decode so
    # valid UTF-8 sequences written as \xHH escapes become real characters.
    data = word.encode("utf-8", "surrogateescape")
    return data.decode("utf-8", "surrogateescape")


def extract_first_word(
    text: str, pos: int = 0, flags: Flags = Flags.NONE, separators: str = WHITESPACE
) -> tuple[str | None, int]:
    """Extract one word from ``text`` starting at ``pos``.

    Returns ``(word, new_pos)``; ``word`` is ``None`` when no word is left.
    ``new_pos`` points past the separators that follow the word, as in
    systemd, so callers can look at what comes next (``Exec*=`` checks for a
    lone ``;`` there).  Raises :class:`WordError` on unbalanced quotes or
    invalid escapes (unless relaxed by ``flags``).
    """
    n = len(text)
    # Skip leading separators.
    while pos < n and text[pos] in separators:
        pos += 1
    if pos >= n:
        return None, pos
    if separators is WHITESPACE:
        # Fast path: a word with no quote or backslash ends at whitespace.
        m = _PLAIN_WORD.match(text, pos)
        if m is not None:
            return m.group(1), m.end()

    f = int(flags)
    unquote = bool(f & 1)
    cunescape = bool(f & 2)
    relax_esc = bool(f & 4)
    relax = bool(f & 8)

    out: list[str] = []
    raw = False
    quote = ""
    while True:
        if pos >= n:
            if quote and not relax:
                raise WordError("unbalanced quoting")
            break
        c = text[pos]
        if c == "\\":
            pos += 1
            if pos >= n:
                # Trailing backslash.
                if relax_esc and (not quote or relax):
                    out.append("\\")
                    break
                if relax:
                    break
                raise WordError("trailing backslash")
            if cunescape:
                dec = cunescape_one(text, pos)
                if dec is not None:
                    ch, used, eight = dec
                    if eight:
                        out.append(chr(0xDC00 + ord(ch)) if ord(ch) >= 0x80 else ch)
                        raw = raw or ord(ch) >= 0x80
                    else:
                        out.append(ch)
                    pos += used
                    continue
                if relax_esc:
                    out.append("\\")
                    out.append(text[pos])
                    pos += 1
                    continue
                raise WordError(f"invalid escape sequence \\{text[pos]}")
            out.append(text[pos])
            pos += 1
            continue
        if quote:
            if c == quote:
                quote = ""
                if not unquote:
                    out.append(c)
            else:
                out.append(c)
            pos += 1
            continue
        if unquote and c in "'\"":
            quote = c
            pos += 1
            continue
        if c in separators:
            while pos < n and text[pos] in separators:
                pos += 1
            break
        out.append(c)
        pos += 1
    return _finish_bytes(out, raw), pos


def extract_first_word_and_warn(
    text: str, pos: int, flags: Flags
) -> tuple[str | None, int, bool]:
    """systemd's ``extract_first_word_and_warn``: retry with relaxed escapes.

    Returns ``(word, new_pos, relaxed)``; ``relaxed`` tells the caller to log
    ``Ignoring unknown escape sequences: "<word>"``.  Unbalanced quotes still
    raise :class:`WordError` (systemd: "Unbalanced quoting, ignoring").
    """
    try:
        word, newpos = extract_first_word(text, pos, flags)
        return word, newpos, False
    except WordError:
        if int(flags) & 4:
            raise
    word, newpos = extract_first_word(text, pos, flags | Flags.UNESCAPE_RELAX)
    return word, newpos, True


def split_words(text: str, flags: Flags = Flags.UNQUOTE | Flags.CUNESCAPE) -> list[str]:
    """Split a whole value into words (strict: raises :class:`WordError`)."""
    words: list[str] = []
    pos = 0
    while True:
        word, pos = extract_first_word(text, pos, flags)
        if word is None:
            return words
        words.append(word)
