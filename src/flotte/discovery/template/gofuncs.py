"""Go's predefined template functions (``text/template/funcs.go``, Go 1.19).

``and``/``or`` return one of their arguments and short-circuit; ``eq`` and
friends follow Go's typing: numbers of different kinds do not compare
(``eq 1 1.0`` and ``eq "3" 3`` are errors), except signed against unsigned
integers; ``len`` counts bytes of a string; ``index`` of a string yields a
``uint8``; ``html``/``js``/``urlquery`` print nil as ``<no value>``.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote_plus

from .gofmt import format_value, sprint, sprintf, sprintln
from .gostrconv import byte_len, from_bytes, is_print, to_bytes
from .values import (
    IFACE_NIL,
    T_IFACE,
    T_STRING,
    T_VALUE,
    UNSIGNED_TYPES,
    GoError,
    GoFunc,
    Uint8,
    go_type_name,
    is_true,
    struct_fields,
)

# --------------------------------------------------------------------------
# comparisons

_INVALID, _BOOL, _COMPLEX, _INT, _FLOAT, _STRING, _UINT = range(7)

ERR_BAD_COMPARISON_TYPE: Final = "invalid type for comparison"
ERR_BAD_COMPARISON: Final = "incompatible types for comparison"
ERR_NO_COMPARISON: Final = "missing argument for comparison"


def _basic_kind(v: Any) -> int:
    if v is None:
        return _INVALID
    if isinstance(v, bool):
        return _BOOL
    if isinstance(v, int):
        return _UINT if isinstance(v, UNSIGNED_TYPES) else _INT
    if isinstance(v, float):
        return _FLOAT
    if isinstance(v, complex):
        return _COMPLEX
    if isinstance(v, str):
        return _STRING
    return _INVALID


def _comparable(v: Any) -> bool:
    if isinstance(v, list | tuple | dict) or callable(v):
        return False
    fields = struct_fields(v)
    if fields is not None:
        return all(_comparable(getattr(v, f)) for f in fields)
    return True


def _uncomparable(v: Any) -> GoError:
    return GoError(f"uncomparable type {go_type_name(v)}: {format_value(v)}")


_PLAIN: Final = (str, int, float, bool)


def eq(arg1: Any, *arg2: Any) -> bool:
    """``a == b || a == c || ...``"""
    if len(arg2) == 1 and type(arg1) is type(arg2[0]) and type(arg1) in _PLAIN:
        return bool(arg1 == arg2[0])
    if arg1 is not None and not _comparable(arg1):
        raise _uncomparable(arg1)
    if not arg2:
        raise GoError(ERR_NO_COMPARISON)
    k1 = _basic_kind(arg1)
    for v2 in arg2:
        k2 = _basic_kind(v2)
        if k1 != k2:
            if k1 == _INT and k2 == _UINT:
                truth = arg1 >= 0 and arg1 == v2
            elif k1 == _UINT and k2 == _INT:
                truth = v2 >= 0 and arg1 == v2
            else:
                raise GoError(ERR_BAD_COMPARISON)
        elif k1 != _INVALID:
            truth = arg1 == v2
        elif v2 is None:
            truth = arg1 is None
        else:
            if not _comparable(v2):
                raise _uncomparable(v2)
            truth = type(arg1) is type(v2) and arg1 == v2
        if truth:
            return True
    return False


def ne(arg1: Any, arg2: Any) -> bool:
    return not eq(arg1, arg2)


def lt(arg1: Any, arg2: Any) -> bool:
    k1 = _basic_kind(arg1)
    if k1 == _INVALID:
        raise GoError(ERR_BAD_COMPARISON_TYPE)
    k2 = _basic_kind(arg2)
    if k2 == _INVALID:
        raise GoError(ERR_BAD_COMPARISON_TYPE)
    if k1 != k2:
        if k1 == _INT and k2 == _UINT:
            return bool(arg1 < 0 or arg1 < arg2)
        if k1 == _UINT and k2 == _INT:
            return bool(arg2 >= 0 and arg1 < arg2)
        raise GoError(ERR_BAD_COMPARISON)
    if k1 in (_BOOL, _COMPLEX):
        raise GoError(ERR_BAD_COMPARISON_TYPE)
    return bool(arg1 < arg2)


def le(arg1: Any, arg2: Any) -> bool:
    return lt(arg1, arg2) or eq(arg1, arg2)


def gt(arg1: Any, arg2: Any) -> bool:
    return not le(arg1, arg2)


def ge(arg1: Any, arg2: Any) -> bool:
    return not lt(arg1, arg2)


# --------------------------------------------------------------------------
# indexing


def _index_arg(index: Any, cap: int) -> int:
    if index is None:
        raise GoError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise GoError(f"cannot index slice/array with type {go_type_name(index)}")
    x = int(index)
    if x < 0 or x > cap:
        raise GoError(f"index out of range: {x}")
    return x


def index(item: Any, *indexes: Any) -> Any:
    """``index x 1 2`` is ``x[1][2]``.

    Go checks the index against the length with ``>`` and then lets
    ``reflect`` panic for an index equal to the length, so that one case
    reports ``reflect: slice index out of range`` instead of
    ``index out of range: N``.
    """
    v = item
    if v is None:
        raise GoError("index of untyped nil")
    for i in indexes:
        if v is None or v is IFACE_NIL:
            raise GoError("index of nil pointer")
        if isinstance(v, str):
            data = to_bytes(v)
            x = _index_arg(i, len(data))
            if x == len(data):
                raise GoError("reflect: string index out of range")
            v = Uint8(data[x])
        elif isinstance(v, list | tuple):
            x = _index_arg(i, len(v))
            if x == len(v):
                raise GoError("reflect: slice index out of range")
            v = v[x]
        elif isinstance(v, dict):
            if i is None:
                raise GoError("value is nil; should be of type string")
            if not isinstance(i, str):
                raise GoError(f"value has type {go_type_name(i)}; should be string")
            v = v.get(i)
        else:
            raise GoError(f"can't index item of type {go_type_name(v)}")
    return v


def slice_(item: Any, *indexes: Any) -> Any:
    """``slice x 1 2`` is ``x[1:2]``; strings are sliced by bytes."""
    v = item
    if v is None:
        raise GoError("slice of untyped nil")
    if len(indexes) > 3:
        raise GoError(f"too many slice indexes: {len(indexes)}")
    data: bytes | None = None
    if isinstance(v, str):
        if len(indexes) == 3:
            raise GoError("cannot 3-index slice a string")
        data = to_bytes(v)
        cap = length = len(data)
    elif isinstance(v, list | tuple):
        cap = length = len(v)
    else:
        raise GoError(f"can't slice item of type {go_type_name(v)}")
    idx = [0, length, 0]
    for k, i in enumerate(indexes):
        idx[k] = _index_arg(i, cap)
    if idx[0] > idx[1]:
        raise GoError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise GoError(f"invalid slice index: {idx[1]} > {idx[2]}")
    if data is not None:
        return from_bytes(data[idx[0] : idx[1]])
    part = v[idx[0] : idx[1]]
    if type(v) is tuple:
        return list(part)
    return part if type(part) is type(v) else type(v)(part)


def length(item: Any) -> int:
    if item is None:
        raise GoError("len of untyped nil")
    if isinstance(item, str):
        return byte_len(item)
    if isinstance(item, list | tuple | dict):
        return len(item)
    raise GoError(f"len of type {go_type_name(item)}")


def not_(arg: Any) -> bool:
    return not is_true(arg)


# --------------------------------------------------------------------------
# escaping


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and type(args[0]) is str:
        return str(args[0])
    return sprint(["<no value>" if a is None else a for a in args])


_HTML = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\x00": "\ufffd"}


def html_escape(s: str) -> str:
    """Go's ``HTMLEscapeString``."""
    if not any(c in s for c in "'\"&<>\x00"):
        return s
    return "".join(_HTML.get(c, c) for c in s)


_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\x3C", ">": "\\x3E", "&": "\\x26", "=": "\\x3D"}


def js_escape(s: str) -> str:
    """Go's ``JSEscapeString``."""
    out = []
    for c in s:
        o = ord(c)
        rep = _JS.get(c)
        if rep is not None:
            out.append(rep)
        elif o < 0x20:
            out.append(f"\\u00{o:02X}")
        elif o < 0x80 or 0xD800 <= o <= 0xDFFF or is_print(c):
            # (surrogates stand for invalid bytes, which Go copies through)
            out.append(c)
        else:
            out.append(f"\\u{o:04X}")
    return "".join(out)


def html(*args: Any) -> str:
    return html_escape(_eval_args(args))


def js(*args: Any) -> str:
    return js_escape(_eval_args(args))


def urlquery(*args: Any) -> str:
    return quote_plus(to_bytes(_eval_args(args)), safe="")


def print_(*args: Any) -> str:
    return sprint(args)


def printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, args)


def println(*args: Any) -> str:
    return sprintln(args)


def _special(*args: Any) -> Any:  # pragma: no cover - never called
    raise AssertionError("evaluated by the engine")


#: The builtins, with their Go signatures (``reflect.Value`` parameters take
#: values of any type, nil included).
BUILTINS: Final[dict[str, GoFunc]] = {
    "and": GoFunc(_special, (T_VALUE,), T_VALUE, special="and"),
    "or": GoFunc(_special, (T_VALUE,), T_VALUE, special="or"),
    "call": GoFunc(_special, (T_VALUE,), T_VALUE, special="call"),
    "not": GoFunc(not_, (T_VALUE,)),
    "len": GoFunc(length, (T_IFACE,)),
    "index": GoFunc(index, (T_VALUE,), T_VALUE),
    "slice": GoFunc(slice_, (T_VALUE,), T_VALUE),
    "print": GoFunc(print_, (), T_IFACE),
    "printf": GoFunc(printf, (T_STRING,), T_IFACE),
    "println": GoFunc(println, (), T_IFACE),
    "html": GoFunc(html, (), T_IFACE),
    "js": GoFunc(js, (), T_IFACE),
    "urlquery": GoFunc(urlquery, (), T_IFACE),
    "eq": GoFunc(eq, (T_VALUE,), T_VALUE),
    "ne": GoFunc(ne, (T_VALUE, T_VALUE)),
    "lt": GoFunc(lt, (T_VALUE, T_VALUE)),
    "le": GoFunc(le, (T_VALUE, T_VALUE)),
    "gt": GoFunc(gt, (T_VALUE, T_VALUE)),
    "ge": GoFunc(ge, (T_VALUE, T_VALUE)),
}
