"""Go's ``fmt`` printing rules: ``print``, ``printf``, ``println`` and ``{{.}}``.

A port of the relevant parts of ``fmt/print.go`` and ``fmt/format.go``:
verbs ``%v %+v %#v %T %s %q %x %X %d %b %o %O %c %U %e %E %f %F %g %G %t %%``,
flags ``+ - # 0 space``, widths and precisions (also ``*`` and ``[n]``
argument indexes), and Go's in-band error notation (``%!d(string=x)``,
``%!s(MISSING)``, ``%!(EXTRA int=1)``).

Surprises kept on purpose because templates see them: ``print`` puts a space
between two operands only when neither is a string (``print "a" 1 2 "b"`` is
``a1 2b``); floats print in the shortest form and switch to an exponent from
1e+06; a nil inside a slice or map prints ``<nil>`` whatever the verb.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .gostrconv import (
    MAX_RUNE,
    can_backquote,
    format_float,
    is_print,
    quote,
    quote_rune,
    to_bytes,
)
from .values import IFACE_NIL, UNSIGNED_TYPES, go_type_name, struct_fields

_NIL_ANGLE = "<nil>"
_MAX_NUM = 1_000_000


def _too_large(n: int) -> bool:
    return n > _MAX_NUM or n < -_MAX_NUM


def _parsenum(s: str, start: int, end: int) -> tuple[int, bool, int]:
    if start >= end:
        return 0, False, end
    num = 0
    isnum = False
    i = start
    while i < end and "0" <= s[i] <= "9":
        if _too_large(num):
            return 0, False, end
        num = num * 10 + ord(s[i]) - 48
        isnum = True
        i += 1
    return num, isnum, i


def _is_plain_int(v: Any) -> bool:
    """An integer Go prints as a number (not bool, not a named type with String())."""
    return isinstance(v, int) and type(v) is not bool and not hasattr(v, "go_string")


def _fmtsort_key(k: Any) -> tuple[int, Any]:
    if isinstance(k, str):
        return (0, k)
    if isinstance(k, bool):
        return (1, k)
    if isinstance(k, int | float):
        return (2, k)
    return (3, str(k))


def sorted_map_keys(d: dict[Any, Any]) -> list[Any]:
    """Map keys in ``internal/fmtsort`` order (strings compare bytewise)."""
    keys = list(d)
    try:
        keys.sort()
    except TypeError:
        keys.sort(key=_fmtsort_key)
    return keys


class Printer:
    """One ``fmt.pp``: an output buffer and the current verb's flags."""

    __slots__ = (
        "arg",
        "buf",
        "erroring",
        "good_arg_num",
        "minus",
        "plus",
        "plus_v",
        "prec",
        "prec_present",
        "reordered",
        "sharp",
        "sharp_v",
        "space",
        "value",
        "wid",
        "wid_present",
        "zero",
    )

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.arg: Any = None
        self.value: Any = None
        self.erroring = False
        self.reordered = False
        self.good_arg_num = True
        self.clear_flags()

    def clear_flags(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid = self.prec = 0
        self.wid_present = self.prec_present = False

    def result(self) -> str:
        return "".join(self.buf)

    # -- padding ---------------------------------------------------------

    def write_padding(self, n: int) -> None:
        if n > 0:
            self.buf.append(("0" if self.zero else " ") * n)

    def pad(self, s: str) -> None:
        if not self.wid_present or self.wid == 0:
            self.buf.append(s)
            return
        width = self.wid - len(s)
        if not self.minus:
            self.write_padding(width)
            self.buf.append(s)
        else:
            self.buf.append(s)
            self.write_padding(width)

    pad_string = pad

    def truncate(self, s: str) -> str:
        if self.prec_present and self.prec < len(s):
            return s[: self.prec]
        return s

    # -- basic kinds -----------------------------------------------------

    def fmt_bool(self, v: bool, verb: str) -> None:
        if verb in "tv":
            self.pad("true" if v else "false")
        else:
            self.bad_verb(verb)

    def fmt_int(self, v: int, verb: str, unsigned: bool) -> None:
        if verb == "v":
            if self.sharp_v and unsigned:
                self.fmt_integer(v, 16, "v", upper=False, sharp=True)
            else:
                self.fmt_integer(v, 10, verb, upper=False)
        elif verb == "d":
            self.fmt_integer(v, 10, verb, upper=False)
        elif verb == "b":
            self.fmt_integer(v, 2, verb, upper=False)
        elif verb in "oO":
            self.fmt_integer(v, 8, verb, upper=False)
        elif verb == "x":
            self.fmt_integer(v, 16, verb, upper=False)
        elif verb == "X":
            self.fmt_integer(v, 16, verb, upper=True)
        elif verb == "c":
            self.pad(_rune_str(v))
        elif verb == "q":
            self.pad(quote_rune(v if 0 <= v <= MAX_RUNE else 0xFFFD, ascii_only=self.plus))
        elif verb == "U":
            self.fmt_unicode(v)
        else:
            self.bad_verb(verb)

    def fmt_integer(self, v: int, base: int, verb: str, upper: bool, sharp: bool = False) -> None:
        negative = v < 0
        u = -v if negative else v
        prec = 0
        if self.prec_present:
            prec = self.prec
            if prec == 0 and u == 0:
                old = self.zero
                self.zero = False
                self.write_padding(self.wid)
                self.zero = old
                return
        elif self.zero and self.wid_present:
            prec = self.wid
            if negative or self.plus or self.space:
                prec -= 1
        if base == 10:
            digits = str(u)
        elif base == 16:
            digits = format(u, "X" if upper else "x")
        elif base == 8:
            digits = format(u, "o")
        else:
            digits = format(u, "b")
        if prec > len(digits):
            digits = "0" * (prec - len(digits)) + digits
        if self.sharp or sharp:
            if base == 2:
                digits = "0b" + digits
            elif base == 8:
                if digits[0] != "0":
                    digits = "0" + digits
            elif base == 16:
                digits = ("0X" if upper else "0x") + digits
        if verb == "O":
            digits = "0o" + digits
        if negative:
            digits = "-" + digits
        elif self.plus:
            digits = "+" + digits
        elif self.space:
            digits = " " + digits
        old = self.zero
        self.zero = False
        self.pad(digits)
        self.zero = old

    def fmt_unicode(self, u: int) -> None:
        s = f"{u:X}"
        width = 4
        if self.prec_present and self.prec > 4:
            width = self.prec
        s = "U+" + s.rjust(width, "0")
        if self.sharp and 0 <= u <= MAX_RUNE and not 0xD800 <= u <= 0xDFFF and is_print(chr(u)):
            s += " '" + chr(u) + "'"
        old = self.zero
        self.zero = False
        self.pad(s)
        self.zero = old

    def fmt_float(self, v: float, verb: str) -> None:
        if verb == "v":
            self._float(v, "g", -1)
        elif verb in "bgGxX":
            self._float(v, verb, -1)
        elif verb in "feEF":
            self._float(v, verb, 6)
        else:
            self.bad_verb(verb)

    def _float(self, v: float, verb: str, prec: int) -> None:
        if self.prec_present:
            prec = self.prec
        num = format_float(v, verb, prec)
        if num[0] not in "+-":
            num = "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if num[1] in "IN":
            old = self.zero
            self.zero = False
            if num[1] == "N" and not self.space and not self.plus:
                num = num[1:]
            self.pad(num)
            self.zero = old
            return
        if self.sharp and verb != "b":
            num = _sharp_float(num, verb, prec)
        if self.plus or num[0] != "+":
            if self.zero and self.wid_present and self.wid > len(num):
                self.buf.append(num[0])
                self.write_padding(self.wid - len(num))
                self.buf.append(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    def fmt_complex(self, v: complex, verb: str) -> None:
        if verb not in "vbgGxXfFeE":
            self.bad_verb(verb)
            return
        old_plus = self.plus
        self.buf.append("(")
        self.fmt_float(v.real, verb)
        self.plus = True
        self.fmt_float(v.imag, verb)
        self.buf.append("i)")
        self.plus = old_plus

    def fmt_string(self, v: str, verb: str) -> None:
        if verb == "v":
            if self.sharp_v:
                self.fmt_q(v)
            else:
                self.pad(self.truncate(v))
        elif verb == "s":
            self.pad(self.truncate(v))
        elif verb == "x":
            self.fmt_sx(v, upper=False)
        elif verb == "X":
            self.fmt_sx(v, upper=True)
        elif verb == "q":
            self.fmt_q(v)
        else:
            self.bad_verb(verb)

    def fmt_q(self, s: str) -> None:
        s = self.truncate(s)
        if self.sharp and can_backquote(s):
            self.pad("`" + s + "`")
            return
        self.pad(quote(s, ascii_only=self.plus))

    def fmt_sx(self, s: str, upper: bool) -> None:
        data = to_bytes(s)
        length = len(data)
        if self.prec_present and self.prec < length:
            length = self.prec
        width = 2 * length
        if width > 0:
            if self.space:
                if self.sharp:
                    width *= 2
                width += length - 1
            elif self.sharp:
                width += 2
        else:
            if self.wid_present:
                self.write_padding(self.wid)
            return
        if self.wid_present and self.wid > width and not self.minus:
            self.write_padding(self.wid - width)
        prefix = "0X" if upper else "0x"
        out = []
        if self.sharp:
            out.append(prefix)
        fmt_byte = "{:02X}" if upper else "{:02x}"
        for i in range(length):
            if self.space and i > 0:
                out.append(" ")
                if self.sharp:
                    out.append(prefix)
            out.append(fmt_byte.format(data[i]))
        self.buf.append("".join(out))
        if self.wid_present and self.wid > width and self.minus:
            self.write_padding(self.wid - width)

    # -- errors ----------------------------------------------------------

    def bad_verb(self, verb: str) -> None:
        self.erroring = True
        self.buf.append("%!" + verb + "(")
        arg, value = self.arg, self.value
        if arg is not None:
            self.buf.append(go_type_name(arg) + "=")
            self.print_arg(arg, "v")
        elif value is not None:
            self.buf.append(go_type_name(value) + "=")
            self.print_value(value, "v", 0)
        else:
            self.buf.append(_NIL_ANGLE)
        self.buf.append(")")
        self.erroring = False

    # -- dispatch --------------------------------------------------------

    def handle_methods(self, verb: str) -> bool:
        if self.erroring or self.sharp_v:
            return False
        if verb in "vsxXq":
            to_string = getattr(self.arg, "go_string", None)
            if to_string is not None:
                self.fmt_string(to_string(), verb)
                return True
        return False

    def print_arg(self, arg: Any, verb: str) -> None:
        self.arg = arg
        self.value = None
        if arg is None or arg is IFACE_NIL:
            if verb in "Tv":
                self.pad(_NIL_ANGLE)
            else:
                self.bad_verb(verb)
            return
        if verb == "T":
            self.pad(self.truncate(go_type_name(arg)))
            return
        if verb == "p":
            self.bad_verb(verb)
            return
        t = type(arg)
        if t is str:
            self.fmt_string(arg, verb)
        elif t is bool:
            self.fmt_bool(arg, verb)
        elif t is int:
            self.fmt_int(arg, verb, unsigned=False)
        elif t is float:
            self.fmt_float(arg, verb)
        elif t is complex:
            self.fmt_complex(arg, verb)
        elif not self.handle_methods(verb):
            self.print_value(arg, verb, 0)

    def print_value(self, value: Any, verb: str, depth: int) -> None:
        if depth > 0 and value is not None and value is not IFACE_NIL:
            self.arg = value
            if self.handle_methods(verb):
                return
        self.arg = None
        self.value = value
        if value is None or value is IFACE_NIL:
            # an interface element holding nil (Go's reflect.Interface case)
            self.buf.append("interface {}(nil)" if self.sharp_v else _NIL_ANGLE)
            return
        if isinstance(value, bool):
            self.fmt_bool(value, verb)
        elif isinstance(value, int):
            self.fmt_int(value, verb, unsigned=isinstance(value, UNSIGNED_TYPES))
        elif isinstance(value, float):
            self.fmt_float(value, verb)
        elif isinstance(value, complex):
            self.fmt_complex(value, verb)
        elif isinstance(value, str):
            self.fmt_string(value, verb)
        elif isinstance(value, dict):
            self._print_map(value, verb, depth)
        elif isinstance(value, list | tuple):
            self._print_slice(value, verb, depth)
        else:
            fields = struct_fields(value)
            if fields is None:
                self.buf.append(str(value))
                return
            if getattr(type(value), "go_pointer", False):
                self.buf.append("&")
            if self.sharp_v:
                self.buf.append(go_type_name(value).lstrip("*"))
            self.buf.append("{")
            for i, name in enumerate(fields):
                if i > 0:
                    self.buf.append(", " if self.sharp_v else " ")
                if self.plus_v or self.sharp_v:
                    self.buf.append(name + ":")
                self.print_value(getattr(value, name), verb, depth + 1)
            self.buf.append("}")

    def _print_map(self, value: dict[Any, Any], verb: str, depth: int) -> None:
        if self.sharp_v:
            self.buf.append(go_type_name(value) + "{")
        else:
            self.buf.append("map[")
        for i, key in enumerate(sorted_map_keys(value)):
            if i > 0:
                self.buf.append(", " if self.sharp_v else " ")
            self.print_value(key, verb, depth + 1)
            self.buf.append(":")
            self.print_value(value[key], verb, depth + 1)
        self.buf.append("}" if self.sharp_v else "]")

    def _print_slice(self, value: Sequence[Any], verb: str, depth: int) -> None:
        if self.sharp_v:
            self.buf.append(go_type_name(value) + "{")
            for i, elem in enumerate(value):
                if i > 0:
                    self.buf.append(", ")
                self.print_value(elem, verb, depth + 1)
            self.buf.append("}")
            return
        self.buf.append("[")
        for i, elem in enumerate(value):
            if i > 0:
                self.buf.append(" ")
            self.print_value(elem, verb, depth + 1)
        self.buf.append("]")

    # -- Printf ----------------------------------------------------------

    def _arg_number(self, arg_num: int, fmt: str, i: int, num_args: int) -> tuple[int, int, bool]:
        if len(fmt) <= i or fmt[i] != "[":
            return arg_num, i, False
        self.reordered = True
        index, wid, ok = _parse_arg_number(fmt[i:])
        if ok and 0 <= index < num_args:
            return index, i + wid, True
        self.good_arg_num = False
        return arg_num, i + wid, ok

    def do_printf(self, fmt: str, args: Sequence[Any]) -> None:
        end = len(fmt)
        arg_num = 0
        after_index = False
        self.reordered = False
        i = 0
        while i < end:
            self.good_arg_num = True
            lasti = i
            j = fmt.find("%", i)
            i = end if j < 0 else j
            if i > lasti:
                self.buf.append(fmt[lasti:i])
            if i >= end:
                break
            i += 1
            self.clear_flags()
            simple_done = False
            while i < end:
                c = fmt[i]
                if c == "#":
                    self.sharp = True
                elif c == "0":
                    self.zero = not self.minus
                elif c == "+":
                    self.plus = True
                elif c == "-":
                    self.minus = True
                    self.zero = False
                elif c == " ":
                    self.space = True
                else:
                    if "a" <= c <= "z" and arg_num < len(args):
                        if c == "v":
                            self.sharp_v = self.sharp
                            self.sharp = False
                            self.plus_v = self.plus
                            self.plus = False
                        self.print_arg(args[arg_num], c)
                        arg_num += 1
                        i += 1
                        simple_done = True
                    break
                i += 1
            if simple_done:
                continue
            arg_num, i, after_index = self._arg_number(arg_num, fmt, i, len(args))
            if i < end and fmt[i] == "*":
                i += 1
                self.wid, self.wid_present, arg_num = _int_from_arg(args, arg_num)
                if not self.wid_present:
                    self.buf.append("%!(BADWIDTH)")
                if self.wid < 0:
                    self.wid = -self.wid
                    self.minus = True
                    self.zero = False
                after_index = False
            else:
                self.wid, self.wid_present, i = _parsenum(fmt, i, end)
                if after_index and self.wid_present:
                    self.good_arg_num = False
            if i + 1 < end and fmt[i] == ".":
                i += 1
                if after_index:
                    self.good_arg_num = False
                arg_num, i, after_index = self._arg_number(arg_num, fmt, i, len(args))
                if i < end and fmt[i] == "*":
                    i += 1
                    self.prec, self.prec_present, arg_num = _int_from_arg(args, arg_num)
                    if self.prec < 0:
                        self.prec = 0
                        self.prec_present = False
                    if not self.prec_present:
                        self.buf.append("%!(BADPREC)")
                    after_index = False
                else:
                    self.prec, self.prec_present, i = _parsenum(fmt, i, end)
                    if not self.prec_present:
                        self.prec = 0
                        self.prec_present = True
            if not after_index:
                arg_num, i, after_index = self._arg_number(arg_num, fmt, i, len(args))
            if i >= end:
                self.buf.append("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if verb == "%":
                self.buf.append("%")
            elif not self.good_arg_num:
                self.buf.append("%!" + verb + "(BADINDEX)")
            elif arg_num >= len(args):
                self.buf.append("%!" + verb + "(MISSING)")
            else:
                if verb == "v":
                    self.sharp_v = self.sharp
                    self.sharp = False
                    self.plus_v = self.plus
                    self.plus = False
                self.print_arg(args[arg_num], verb)
                arg_num += 1
        if not self.reordered and arg_num < len(args):
            self.clear_flags()
            self.buf.append("%!(EXTRA ")
            for k, arg in enumerate(args[arg_num:]):
                if k > 0:
                    self.buf.append(", ")
                if arg is None or arg is IFACE_NIL:
                    self.buf.append(_NIL_ANGLE)
                else:
                    self.buf.append(go_type_name(arg) + "=")
                    self.print_arg(arg, "v")
            self.buf.append(")")


def _parse_arg_number(fmt: str) -> tuple[int, int, bool]:
    if len(fmt) < 3:
        return 0, 1, False
    for i in range(1, len(fmt)):
        if fmt[i] == "]":
            width, ok, newi = _parsenum(fmt, 1, i)
            if not ok or newi != i:
                return 0, i + 1, False
            return width - 1, i + 1, True
    return 0, 1, False


def _int_from_arg(args: Sequence[Any], arg_num: int) -> tuple[int, bool, int]:
    num, is_int, new = 0, False, arg_num
    if arg_num < len(args):
        a = args[arg_num]
        if _is_plain_int(a):
            num, is_int = int(a), True
            if not -(1 << 63) <= num < 1 << 63:
                num, is_int = 0, False
        new = arg_num + 1
        if _too_large(num):
            num, is_int = 0, False
    return num, is_int, new


def _sharp_float(num: str, verb: str, prec: int) -> str:
    """The ``#`` flag for floats: keep the decimal point and trailing zeros."""
    digits = 0
    if verb in "vgGx":
        digits = 6 if prec == -1 else prec
    tail = ""
    body = num
    for k in range(1, len(num)):
        ch = num[k]
        if ch in "pP" or (ch in "eE" and verb not in "xX"):
            body, tail = num[:k], num[k:]
            break
    has_point = False
    saw_nonzero = False
    for ch in body[1:]:
        if ch == ".":
            has_point = True
        elif ch.isdigit() or (verb in "xX" and ch not in "pP"):
            if ch != "0":
                saw_nonzero = True
            if saw_nonzero:
                digits -= 1
    if not has_point:
        if len(body) == 2 and body[1] == "0":
            digits -= 1
        body += "."
    if digits > 0:
        body += "0" * digits
    return body + tail


def _rune_str(v: int) -> str:
    if v < 0 or v > MAX_RUNE or 0xD800 <= v <= 0xDFFF:
        return "\ufffd"
    return chr(v)


# --------------------------------------------------------------------------
# Entry points.


def format_value(v: Any) -> str:
    """``fmt.Sprint(v)`` -- how ``{{.}}`` prints a (non-nil) value."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is int:
        return str(v)
    if t is bool:
        return "true" if v else "false"
    if t is float:
        return format_float(v, "g", -1)
    p = Printer()
    p.print_arg(v, "v")
    return p.result()


def _is_string_kind(v: Any) -> bool:
    return isinstance(v, str)


def sprint(args: Sequence[Any]) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    p = Printer()
    prev_string = False
    for k, arg in enumerate(args):
        is_string = _is_string_kind(arg)
        if k > 0 and not is_string and not prev_string:
            p.buf.append(" ")
        p.print_arg(arg, "v")
        prev_string = is_string
    return p.result()


def sprintln(args: Sequence[Any]) -> str:
    """``fmt.Sprintln``: spaces between all operands and a final newline."""
    p = Printer()
    for k, arg in enumerate(args):
        if k > 0:
            p.buf.append(" ")
        p.print_arg(arg, "v")
    p.buf.append("\n")
    return p.result()


_Plan = tuple[tuple[str, str], ...]
_plans: dict[str, _Plan | None] = {}
_UNPLANNED: _Plan = (("", "?"),)


def _plan(fmt: str) -> _Plan | None:
    """``fmt`` as (literal, verb) pairs if it only has flagless ``%s %d %v``."""
    pieces: list[tuple[str, str]] = []
    i = 0
    lit: list[str] = []
    n = len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            lit.append(fmt[i:])
            break
        lit.append(fmt[i:j])
        if j + 1 >= n:
            return None
        verb = fmt[j + 1]
        if verb == "%":
            lit.append("%")
        elif verb in "sdv":
            pieces.append(("".join(lit), verb))
            lit = []
        else:
            return None
        i = j + 2
    pieces.append(("".join(lit), ""))
    return tuple(pieces)


def sprintf(fmt: str, args: Sequence[Any]) -> str:
    """``fmt.Sprintf``."""
    plan = _plans.get(fmt, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _plan(fmt)
        if len(_plans) < 1024:
            _plans[fmt] = plan
    if plan is not None and len(plan) == len(args) + 1:
        out: list[str] = []
        for (lit, verb), arg in zip(plan, args, strict=False):
            out.append(lit)
            t = type(arg)
            if t is str and verb != "d":
                out.append(arg)
            elif t is int and verb != "s":
                out.append(str(arg))
            else:
                break
        else:
            out.append(plan[-1][0])
            return "".join(out)
    p = Printer()
    p.do_printf(fmt, args)
    return p.result()


__all__ = [
    "Printer",
    "format_value",
    "sorted_map_keys",
    "sprint",
    "sprintf",
    "sprintln",
]
