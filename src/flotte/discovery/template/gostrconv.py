"""The parts of Go's ``strconv`` and ``unicode`` that templates can observe.

Go strings are byte strings; ours are ``str``.  Bytes that are not valid
UTF-8 travel as ``surrogateescape`` code points (U+DC80..U+DCFF), so
:func:`to_bytes`/:func:`from_bytes` round-trip exactly and ``len`` can count
bytes like Go does.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Final

MAX_RUNE: Final = 0x10FFFF
RUNE_ERROR: Final = "\ufffd"

_SPECIAL_ESCAPES: Final = {
    0x07: "\\a",
    0x08: "\\b",
    0x0C: "\\f",
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    0x0B: "\\v",
}


class SyntaxErr(ValueError):
    """``strconv.ErrSyntax`` ("invalid syntax")."""

    def __init__(self, msg: str = "invalid syntax") -> None:
        super().__init__(msg)


class RangeErr(ValueError):
    """``strconv.ErrRange`` ("value out of range")."""

    def __init__(self, msg: str = "value out of range") -> None:
        super().__init__(msg)


def to_bytes(s: str) -> bytes:
    """The Go byte string behind ``s``."""
    return s.encode("utf-8", "surrogateescape")


def from_bytes(b: bytes) -> str:
    """The ``str`` for a Go byte string (invalid UTF-8 kept as surrogates)."""
    return b.decode("utf-8", "surrogateescape")


def byte_len(s: str) -> int:
    """``len(s)`` in Go: bytes, not characters."""
    if s.isascii():
        return len(s)
    return len(to_bytes(s))


def is_escaped_byte(o: int) -> bool:
    """Is code point ``o`` a surrogate-escaped invalid byte?"""
    return 0xDC80 <= o <= 0xDCFF


def is_print(c: str) -> bool:
    """Go's ``unicode.IsPrint``: letters, marks, numbers, punctuation, symbols, ASCII space."""
    o = ord(c)
    if o < 0x80:
        return 0x20 <= o < 0x7F
    if 0xD800 <= o <= 0xDFFF:
        return False
    return unicodedata.category(c)[0] in "LMNPS"


def is_letter(c: str) -> bool:
    """Go's ``unicode.IsLetter``."""
    return c.isalpha()


def is_digit(c: str) -> bool:
    """Go's ``unicode.IsDigit`` (category Nd only, unlike ``str.isdigit``)."""
    return c.isdecimal()


def _escape_rune(o: int, quote: int, ascii_only: bool) -> str:
    if o == quote or o == 0x5C:
        return "\\" + chr(o)
    if ascii_only:
        if o < 0x80 and 0x20 <= o < 0x7F:
            return chr(o)
    elif not (0xD800 <= o <= 0xDFFF) and is_print(chr(o)):
        return chr(o)
    special = _SPECIAL_ESCAPES.get(o)
    if special is not None:
        return special
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if 0xD800 <= o <= 0xDFFF or o > MAX_RUNE:
        o = 0xFFFD
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def quote(s: str, ascii_only: bool = False, quote_char: str = '"') -> str:
    """``strconv.Quote`` (``QuoteToASCII`` with ``ascii_only``)."""
    q = ord(quote_char)
    out = [quote_char]
    for c in s:
        o = ord(c)
        if is_escaped_byte(o):
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0x20 <= o < 0x7F and o != q and o != 0x5C:
            out.append(c)
        else:
            out.append(_escape_rune(o, q, ascii_only))
    out.append(quote_char)
    return "".join(out)


def quote_rune(r: int, ascii_only: bool = False) -> str:
    """``strconv.QuoteRune``: a Go character literal such as ``'x'``."""
    if r > MAX_RUNE or 0xD800 <= r <= 0xDFFF or r < 0:
        r = 0xFFFD
    return "'" + _escape_rune(r, 0x27, ascii_only) + "'"


def can_backquote(s: str) -> bool:
    """``strconv.CanBackquote``."""
    for c in s:
        o = ord(c)
        if c == "`" or c == "\ufeff" or is_escaped_byte(o):
            return False
        if (o < 0x20 and c != "\t") or o == 0x7F:
            return False
    return True


def format_unicode_point(c: str) -> str:
    """Go's ``%#U``: ``U+0029 ')'``."""
    o = ord(c)
    if is_print(c):
        return f"U+{o:04X} '{c}'"
    return f"U+{o:04X}"


# --------------------------------------------------------------------------
# Unquoting.

_HEX = "0123456789abcdefABCDEF"


def unquote_char(s: str, i: int, quote_ch: str) -> tuple[int, bool, int]:
    """``strconv.UnquoteChar`` on ``s[i:]``: (value, multibyte, next index).

    ``multibyte`` is false for ``\\x`` and octal escapes, which denote a single
    byte that is not necessarily valid UTF-8.
    """
    if i >= len(s):
        raise SyntaxErr
    c = s[i]
    if c == quote_ch and quote_ch in "'\"":
        raise SyntaxErr
    if ord(c) >= 0x80:
        o = ord(c)
        if is_escaped_byte(o):
            return 0xFFFD, True, i + 1
        return o, True, i + 1
    if c != "\\":
        return ord(c), False, i + 1
    if i + 1 >= len(s):
        raise SyntaxErr
    c = s[i + 1]
    i += 2
    simple = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 0x5C}
    if c in simple:
        return simple[c], False, i
    if c in "xuU":
        n = {"x": 2, "u": 4, "U": 8}[c]
        if len(s) - i < n:
            raise SyntaxErr
        digits = s[i : i + n]
        if any(d not in _HEX for d in digits):
            raise SyntaxErr
        v = int(digits, 16)
        i += n
        if c == "x":
            return v, False, i
        if v > MAX_RUNE or 0xD800 <= v <= 0xDFFF:
            raise SyntaxErr
        return v, True, i
    if "0" <= c <= "7":
        if len(s) - i < 2:
            raise SyntaxErr
        v = ord(c) - 48
        for j in range(2):
            d = s[i + j]
            if not "0" <= d <= "7":
                raise SyntaxErr
            v = (v << 3) | (ord(d) - 48)
        if v > 255:
            raise SyntaxErr
        return v, False, i + 2
    if c in "'\"":
        if c != quote_ch:
            raise SyntaxErr
        return ord(c), False, i
    raise SyntaxErr


def unquote(s: str) -> str:
    """``strconv.Unquote`` for ``"..."``, `` `...` `` and ``'...'`` literals.

    Go drops carriage returns from raw strings; ``\\x`` escapes produce raw
    bytes (kept as surrogate escapes when they are not UTF-8).
    """
    n = len(s)
    if n < 2:
        raise SyntaxErr
    q = s[0]
    if q != s[-1]:
        raise SyntaxErr
    body = s[1:-1]
    if q == "`":
        if "`" in body:
            raise SyntaxErr
        return body.replace("\r", "")
    if q not in "\"'":
        raise SyntaxErr
    if "\n" in body:
        raise SyntaxErr
    if "\\" not in body and q not in body:
        if q == '"' and not any(is_escaped_byte(ord(c)) for c in body):
            return body
        if q == "'" and len(body) == 1 and not is_escaped_byte(ord(body)):
            return body
    out = bytearray()
    i = 0
    while i < len(body):
        v, multibyte, i = unquote_char(body, i, q)
        if v < 0x80 or not multibyte:
            out.append(v & 0xFF)
        else:
            out += chr(v).encode("utf-8")
        if q == "'" and i != len(body):
            raise SyntaxErr
    return from_bytes(bytes(out))


# --------------------------------------------------------------------------
# Number parsing (the template parser's literals, Atoi, ParseBool).


def _underscore_ok(s: str) -> bool:
    """``strconv.underscoreOK``: underscores only between digits."""
    saw = "^"
    i = 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i = 2
        saw = "0"
        hexa = s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9" or (hexa and "a" <= c.lower() <= "f"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def parse_uint_base0(s: str) -> int:
    """``strconv.ParseUint(s, 0, 64)``."""
    if s == "":
        raise SyntaxErr
    s0 = s
    base = 10
    if s[0] == "0":
        if len(s) >= 3 and s[1].lower() == "b":
            base, s = 2, s[2:]
        elif len(s) >= 3 and s[1].lower() == "o":
            base, s = 8, s[2:]
        elif len(s) >= 3 and s[1].lower() == "x":
            base, s = 16, s[2:]
        else:
            base, s = 8, s[1:]
    underscores = False
    n = 0
    for c in s:
        if c == "_":
            underscores = True
            continue
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "a" <= c.lower() <= "z":
            d = ord(c.lower()) - 87
        else:
            raise SyntaxErr
        if d >= base:
            raise SyntaxErr
        n = n * base + d
    if underscores and not _underscore_ok(s0):
        raise SyntaxErr
    if n >= 1 << 64:
        raise RangeErr
    return n


def parse_int_base0(s: str) -> int:
    """``strconv.ParseInt(s, 0, 64)``."""
    if s == "":
        raise SyntaxErr
    neg = False
    body = s
    if s[0] in "+-":
        neg = s[0] == "-"
        body = s[1:]
    u = parse_uint_base0(body)
    if neg:
        if u > 1 << 63:
            raise RangeErr
        return -u
    if u >= 1 << 63:
        raise RangeErr
    return u


_DEC_FLOAT = re.compile(r"[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)(?:[pP][+-]?[0-9_]+)?")


def parse_float(s: str) -> float:
    """``strconv.ParseFloat(s, 64)`` for the number syntax the lexer accepts."""
    if _DEC_FLOAT.fullmatch(s):
        if "_" in s and not _underscore_ok(s):
            raise SyntaxErr
        body = s.replace("_", "")
        if not any(c.isdigit() for c in body.split("e")[0].split("E")[0]):
            raise SyntaxErr
        try:
            f = float(body)
        except ValueError:
            raise SyntaxErr from None
    elif _HEX_FLOAT.fullmatch(s):
        if "_" in s and not _underscore_ok(s):
            raise SyntaxErr
        body = s.replace("_", "")
        sign = -1.0 if body[0] == "-" else 1.0
        if body[0] in "+-":
            body = body[1:]
        mant = body[2:]
        if not any(c in _HEX for c in mant.split("p")[0].split("P")[0]):
            raise SyntaxErr
        if "p" not in mant.lower():
            mant += "p0"
        try:
            f = sign * float.fromhex("0x" + mant)
        except (ValueError, OverflowError):
            raise RangeErr from None
    else:
        raise SyntaxErr
    if math.isinf(f):
        raise RangeErr
    return f


_ATOI = re.compile(r"[+-]?[0-9]+")


def atoi(s: str) -> int:
    """``strconv.Atoi``; errors carry Go's exact message."""
    if not _ATOI.fullmatch(s) or not s.isascii():
        raise ValueError(f"strconv.Atoi: parsing {quote(s)}: invalid syntax")
    n = int(s)
    if not -(1 << 63) <= n < 1 << 63:
        raise ValueError(f"strconv.Atoi: parsing {quote(s)}: value out of range")
    return n


def parse_bool(s: str) -> bool:
    """``strconv.ParseBool``; errors carry Go's exact message."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {quote(s)}: invalid syntax")


# --------------------------------------------------------------------------
# Float formatting (strconv.FormatFloat).


def shortest_digits(x: float) -> tuple[str, int]:
    """Shortest decimal digits that round-trip ``abs(x)``, and the decimal point.

    Returns ``(digits, dp)`` with ``abs(x) == 0.<digits> * 10**dp``, the same
    decomposition Go's ``strconv`` uses; Python's ``repr`` picks the same
    shortest digits as Go's ``FormatFloat(x, 'g', -1, 64)``.
    """
    r = repr(abs(x))
    if r == "0.0":
        return "", 0
    mant, _, exp_s = r.partition("e")
    exp = int(exp_s) if exp_s else 0
    ip, _, fp = mant.partition(".")
    if fp == "0":
        fp = ""
    digits = ip + fp
    dp = len(ip) + exp
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    return stripped.rstrip("0"), dp


def _fmt_e(neg: bool, digits: str, dp: int, prec: int, ch: str) -> str:
    first = digits[0] if digits else "0"
    out = ["-" if neg else "", first]
    if prec > 0:
        frac = digits[1 : 1 + prec]
        out.append("." + frac + "0" * (prec - len(frac)))
    exp = dp - 1 if digits else 0
    sign = "-" if exp < 0 else "+"
    exp = abs(exp)
    out.append(f"{ch}{sign}{exp:02d}")
    return "".join(out)


def _fmt_f(neg: bool, digits: str, dp: int, prec: int) -> str:
    out = ["-" if neg else ""]
    if dp > 0:
        ip = digits[:dp]
        out.append(ip + "0" * (dp - len(ip)))
    else:
        out.append("0")
    if prec > 0:
        frac = []
        for i in range(prec):
            j = dp + i
            frac.append(digits[j] if 0 <= j < len(digits) else "0")
        out.append("." + "".join(frac))
    return "".join(out)


def format_float(x: float, fmt: str, prec: int) -> str:
    """``strconv.FormatFloat(x, fmt, prec, 64)`` for fmt in ``eEfgGbxX``.

    ``prec == -1`` means the shortest representation, which is what ``%v``
    uses: 1000000 prints as ``1e+06`` because Go switches to the exponent
    form from exponent 21 for JSON but from 6 (the shortest-``%g`` rule) here.
    """
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if fmt == "F":
        fmt = "f"
    if fmt == "b":
        return _format_b(x)
    if fmt in "xX":
        return _format_x(x, prec, fmt)
    neg = math.copysign(1.0, x) < 0
    if prec >= 0:
        if fmt in "gG" and prec == 0:
            prec = 1
        s = f"{abs(x):.{prec}{fmt}}"
        if fmt == "G":
            s = s.replace("e", "E")
        return ("-" if neg else "") + s
    digits, dp = shortest_digits(x)
    if fmt in "eE":
        return _fmt_e(neg, digits, dp, max(len(digits) - 1, 0), fmt)
    if fmt == "f":
        return _fmt_f(neg, digits, dp, max(len(digits) - dp, 0))
    # 'g' / 'G', shortest: the exponent form is used when the decimal
    # exponent is below -4 or at least 6 (Go's "eprec = 6 when shortest").
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _fmt_e(neg, digits, dp, max(len(digits) - 1, 0), "e" if fmt == "g" else "E")
    return _fmt_f(neg, digits, dp, max(len(digits) - dp, 0))


def _format_b(x: float) -> str:
    neg = math.copysign(1.0, x) < 0
    a = abs(x)
    if a == 0:
        return ("-" if neg else "") + "0p-1074"
    m, e = math.frexp(a)
    mant = int(m * (1 << 53))
    exp = e - 53
    if exp < -1074:
        mant = int(math.ldexp(a, 1074))
        exp = -1074
    return f"{'-' if neg else ''}{mant}p{'+' if exp >= 0 else '-'}{abs(exp)}"


def _format_x(x: float, prec: int, fmt: str) -> str:
    neg = math.copysign(1.0, x) < 0
    a = abs(x)
    if a == 0:
        mant, exp = 0, 0
    else:
        m, e = math.frexp(a)  # a = m * 2**e, 0.5 <= m < 1
        mant = int(m * (1 << 53))  # 53 significant bits, leading one at bit 52
        exp = e - 1
    # mantissa as 1.xxxx: fraction has 52 bits = 13 hex digits
    frac = mant & ((1 << 52) - 1)
    lead = mant >> 52
    if prec >= 0 and prec < 13:
        shift = (13 - prec) * 4
        half = 1 << (shift - 1)
        rem = frac & ((1 << shift) - 1)
        frac >>= shift
        if rem > half or (rem == half and frac & 1):
            frac += 1
            if frac >> (prec * 4):
                frac = 0
                lead += 1
                if lead == 2:
                    lead = 1
                    exp += 1
        digits = f"{frac:0{prec}x}" if prec > 0 else ""
    else:
        digits = f"{frac:013x}".rstrip("0") if prec < 0 else f"{frac:013x}" + "0" * (prec - 13)
    if a == 0:
        lead = 0
    s = f"0x{lead}"
    if digits:
        s += "." + digits
    sign = "+" if exp >= 0 else "-"
    s += f"p{sign}{abs(exp):02d}"
    if fmt == "X":
        s = s.upper()
    return ("-" if neg else "") + s
