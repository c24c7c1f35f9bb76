"""``encoding/json.Unmarshal`` into ``interface{}`` values, with Go's errors.

confd's ``json`` and ``jsonArray`` surface Go's error strings in the render
error (``invalid character 'o' in literal null (expecting 'u')``), so the
syntax check is a port of Go's scanner state machine, run over the UTF-8
bytes like Go does; the decoding itself is then left to Python's ``json``
(numbers become ``float`` -- Go decodes every JSON number to ``float64``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from .gostrconv import from_bytes, quote, to_bytes


class JSONError(ValueError):
    """A Go ``json`` error; ``str()`` is Go's message."""


def _quote_char(c: int) -> str:
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    q = quote(chr(c))
    return "'" + q[1:-1] + "'"


_SPACE = frozenset(b" \t\r\n")

# parse-state stack entries
_IN_OBJECT_KEY = 0
_IN_OBJECT_VALUE = 1
_IN_ARRAY_VALUE = 2


class _Scanner:
    """Go's ``encoding/json`` scanner (``scanner.go``), validation only."""

    def __init__(self) -> None:
        self.step: Callable[[int], bool] = self.begin_value
        self.stack: list[int] = []
        self.end_top = False
        self.err: str | None = None

    def error(self, c: int, context: str) -> bool:
        self.step = self.stop
        self.err = f"invalid character {_quote_char(c)} {context}"
        return False

    def stop(self, c: int) -> bool:
        return False

    def push(self, s: int) -> None:
        self.stack.append(s)

    def pop(self) -> None:
        self.stack.pop()
        if not self.stack:
            self.step = self.end_top_state
            self.end_top = True
        else:
            self.step = self.end_value

    # -- values ----------------------------------------------------------

    def begin_value_or_empty(self, c: int) -> bool:
        if c in _SPACE:
            return True
        if c == 0x5D:  # ]
            return self.end_value(c)
        return self.begin_value(c)

    def begin_value(self, c: int) -> bool:
        if c in _SPACE:
            return True
        if c == 0x7B:  # {
            self.step = self.begin_string_or_empty
            self.push(_IN_OBJECT_KEY)
            return True
        if c == 0x5B:  # [
            self.step = self.begin_value_or_empty
            self.push(_IN_ARRAY_VALUE)
            return True
        if c == 0x22:
            self.step = self.in_string
            return True
        if c == 0x2D:  # -
            self.step = self.neg
            return True
        if c == 0x30:
            self.step = self.zero
            return True
        if 0x31 <= c <= 0x39:
            self.step = self.digits1
            return True
        if c == 0x74:
            self.step = self._literal("rue", "true")
            return True
        if c == 0x66:
            self.step = self._literal("alse", "false")
            return True
        if c == 0x6E:
            self.step = self._literal("ull", "null")
            return True
        return self.error(c, "looking for beginning of value")

    def begin_string_or_empty(self, c: int) -> bool:
        if c in _SPACE:
            return True
        if c == 0x7D:  # }
            self.stack[-1] = _IN_OBJECT_VALUE
            return self.end_value(c)
        return self.begin_string(c)

    def begin_string(self, c: int) -> bool:
        if c in _SPACE:
            return True
        if c == 0x22:
            self.step = self.in_string
            return True
        return self.error(c, "looking for beginning of object key string")

    def end_value(self, c: int) -> bool:
        if not self.stack:
            self.step = self.end_top_state
            self.end_top = True
            return self.end_top_state(c)
        if c in _SPACE:
            self.step = self.end_value
            return True
        ps = self.stack[-1]
        if ps == _IN_OBJECT_KEY:
            if c == 0x3A:  # :
                self.stack[-1] = _IN_OBJECT_VALUE
                self.step = self.begin_value
                return True
            return self.error(c, "after object key")
        if ps == _IN_OBJECT_VALUE:
            if c == 0x2C:
                self.stack[-1] = _IN_OBJECT_KEY
                self.step = self.begin_string
                return True
            if c == 0x7D:
                self.pop()
                return True
            return self.error(c, "after object key:value pair")
        if c == 0x2C:
            self.step = self.begin_value
            return True
        if c == 0x5D:
            self.pop()
            return True
        return self.error(c, "after array element")

    def end_top_state(self, c: int) -> bool:
        if c not in _SPACE:
            self.error(c, "after top-level value")
        return True

    # -- strings ---------------------------------------------------------

    def in_string(self, c: int) -> bool:
        if c == 0x22:
            self.step = self.end_value
            return True
        if c == 0x5C:
            self.step = self.in_string_esc
            return True
        if c < 0x20:
            return self.error(c, "in string literal")
        return True

    def in_string_esc(self, c: int) -> bool:
        if c in b'bfnrt\\/"':
            self.step = self.in_string
            return True
        if c == 0x75:  # u
            self.step = self._hex(4)
            return True
        return self.error(c, "in string escape code")

    def _hex(self, n: int) -> Callable[[int], bool]:
        def step(c: int) -> bool:
            if c in b"0123456789abcdefABCDEF":
                self.step = self.in_string if n == 1 else self._hex(n - 1)
                return True
            return self.error(c, "in \\u hexadecimal character escape")

        return step

    # -- numbers ---------------------------------------------------------

    def neg(self, c: int) -> bool:
        if c == 0x30:
            self.step = self.zero
            return True
        if 0x31 <= c <= 0x39:
            self.step = self.digits1
            return True
        return self.error(c, "in numeric literal")

    def digits1(self, c: int) -> bool:
        if 0x30 <= c <= 0x39:
            return True
        return self.zero(c)

    def zero(self, c: int) -> bool:
        if c == 0x2E:
            self.step = self.dot
            return True
        if c in (0x65, 0x45):
            self.step = self.exp
            return True
        return self.end_value(c)

    def dot(self, c: int) -> bool:
        if 0x30 <= c <= 0x39:
            self.step = self.dot0
            return True
        return self.error(c, "after decimal point in numeric literal")

    def dot0(self, c: int) -> bool:
        if 0x30 <= c <= 0x39:
            return True
        if c in (0x65, 0x45):
            self.step = self.exp
            return True
        return self.end_value(c)

    def exp(self, c: int) -> bool:
        if c in (0x2B, 0x2D):
            self.step = self.exp_sign
            return True
        return self.exp_sign(c)

    def exp_sign(self, c: int) -> bool:
        if 0x30 <= c <= 0x39:
            self.step = self.exp0
            return True
        return self.error(c, "in exponent of numeric literal")

    def exp0(self, c: int) -> bool:
        if 0x30 <= c <= 0x39:
            return True
        return self.end_value(c)

    # -- literals --------------------------------------------------------

    def _literal(self, rest: str, word: str) -> Callable[[int], bool]:
        want = ord(rest[0])

        def step(c: int) -> bool:
            if c == want:
                self.step = self._literal(rest[1:], word) if len(rest) > 1 else self.end_value
                return True
            return self.error(c, f"in literal {word} (expecting {_quote_char(want)})")

        return step


def check_valid(data: bytes) -> None:
    """Raise :class:`JSONError` with Go's message if ``data`` is not valid JSON."""
    s = _Scanner()
    for c in data:
        if not s.step(c):
            raise JSONError(s.err)
    if s.err is not None:
        raise JSONError(s.err)
    if s.end_top:
        return
    s.step(0x20)
    if s.end_top and s.err is None:
        return
    raise JSONError(s.err or "unexpected end of JSON input")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _fix_strings(v: Any) -> Any:
    """Go replaces invalid UTF-8 and unpaired ``\\u`` surrogates with U+FFFD."""
    if isinstance(v, str):
        return _SURROGATE.sub("\ufffd", v)
    if isinstance(v, list):
        return [_fix_strings(x) for x in v]
    if isinstance(v, dict):
        return {_fix_strings(k): _fix_strings(x) for k, x in v.items()}
    return v


def _parse_number(s: str) -> float:
    f = float(s)
    if math.isinf(f):
        raise JSONError(f"json: cannot unmarshal number {s} into Go value of type float64")
    return f


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    return "number"


def unmarshal(text: str, want: str) -> Any:
    """Decode ``text`` into a Go ``map[string]interface {}`` or ``[]interface {}``.

    ``want`` is ``"object"`` or ``"array"``.  JSON ``null`` gives Go's nil map
    or slice, which behaves like an empty one.
    """
    data = to_bytes(text)
    check_valid(data)
    try:
        value = json.loads(
            from_bytes(data),
            parse_float=_parse_number,
            parse_int=_parse_number,
        )
    except RecursionError:
        raise JSONError("exceeded max depth") from None
    if value is None:
        return {} if want == "object" else []
    kind = _kind(value)
    if kind != want:
        target = "map[string]interface {}" if want == "object" else "[]interface {}"
        raise JSONError(f"json: cannot unmarshal {kind} into Go value of type {target}")
    if "\\u" in text or _SURROGATE.search(text):
        value = _fix_strings(value)
    return value
