"""How Go values are represented in Python, and Go's type rules over them.

Go's ``text/template`` is driven by ``reflect``: what a function accepts, how a
value prints, whether ``eq`` may compare two values and which error message
comes out all depend on the *static* Go type of a value.  confd templates rely
on those rules (``join`` refuses a ``jsonArray`` result, ``reverse`` silently
ignores a ``gets`` result, ``eq (getv "/n") 3`` is an error), so the Python
representation keeps enough type information to reproduce them:

=========================  ==========================================
Go type                    Python value
=========================  ==========================================
``string``                 ``str`` (bytes that are not UTF-8 are kept as
                           ``surrogateescape`` code points)
``int``                    ``int`` (wraps at 64 bits where Go would)
``int64`` / ``uint8`` ...  :class:`Int64`, :class:`Uint8`, :class:`Uint16`
``float64``                ``float``
``bool``                   ``bool``
``[]interface {}``         plain ``list`` (and ``tuple``)
``[]string``               :class:`StrSlice`
``[]int``                  :class:`IntSlice`
``memkv.KVPairs``          :class:`KVPairs` (what ``gets`` returns)
``[]memkv.KVPair``         :class:`KVPairSlice`
``map[string]interface{}`` ``dict``
``memkv.KVPair``           :class:`KVPair`
``*net.SRV``               :class:`SRV`
untyped ``nil``            ``None`` (Go's invalid ``reflect.Value``)
=========================  ==========================================

A nil stored *inside* an ``interface{}`` slot (a JSON ``null`` in a map or
array) is a different thing for Go than a missing value: ranging over it or
walking a field through it gives ``nil pointer evaluating interface {}.x``
instead of ``<no value>``.  Where that difference is observable the evaluator
uses the :data:`IFACE_NIL` sentinel; every pipeline result is normalised back
to ``None`` exactly where Go "digs" into an interface.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Final


class _Missing:
    """Go's ``missingVal``: "no final argument from a previous pipeline stage"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


class _IfaceNil:
    """A nil held in an ``interface{}`` slot (see the module docstring)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IFACE_NIL"


MISSING: Final = _Missing()
IFACE_NIL: Final = _IfaceNil()


class GoError(Exception):
    """The ``error`` result of a template function.

    Raising it from a function is the Python spelling of returning a non-nil
    ``error``: execution stops with ``error calling <name>: <message>``.
    """


# --------------------------------------------------------------------------
# Named Go types.


class Int64(int):
    """Go ``int64`` (``time.Time.Unix`` returns one; ``printf "%T"`` says so)."""

    __slots__ = ()
    go_type: ClassVar[str] = "int64"


class Uint8(int):
    """Go ``uint8``: what ``index`` returns for a byte of a string."""

    __slots__ = ()
    go_type: ClassVar[str] = "uint8"


class Uint16(int):
    """Go ``uint16``: the ``Port``/``Priority``/``Weight`` fields of ``net.SRV``."""

    __slots__ = ()
    go_type: ClassVar[str] = "uint16"


#: int subclasses that Go treats as unsigned integers.
UNSIGNED_TYPES: Final = (Uint8, Uint16)


class StrSlice(list[str]):
    """Go ``[]string``: ``getvs``, ``split``, ``ls``, ``lsdir``, ``lookupIP``..."""

    __slots__ = ()
    go_type: ClassVar[str] = "[]string"


class IntSlice(list[int]):
    """Go ``[]int``: the result of ``seq``."""

    __slots__ = ()
    go_type: ClassVar[str] = "[]int"


class KVPairs(list["KVPair"]):
    """memkv's named slice type ``KVPairs``, returned by ``gets``.

    It is a *named* type, which is why confd's ``reverse`` (a type switch on
    ``[]memkv.KVPair``) leaves it untouched.
    """

    __slots__ = ()
    go_type: ClassVar[str] = "memkv.KVPairs"


class KVPairSlice(list["KVPair"]):
    """Go ``[]memkv.KVPair`` (the result of ``sortKVByLength``)."""

    __slots__ = ()
    go_type: ClassVar[str] = "[]memkv.KVPair"


class SRVSlice(list["SRV"]):
    """Go ``[]*net.SRV``: the result of ``lookupSRV``."""

    __slots__ = ()
    go_type: ClassVar[str] = "[]*net.SRV"


class KVPair:
    """memkv's ``KVPair{Key, Value string}``; ``.Key`` is the full store key."""

    __slots__ = ("Key", "Value")
    go_type: ClassVar[str] = "memkv.KVPair"
    go_fields: ClassVar[tuple[str, ...]] = ("Key", "Value")

    def __init__(self, key: str, value: str) -> None:
        self.Key = key
        self.Value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KVPair) and self.Key == other.Key and self.Value == other.Value

    def __hash__(self) -> int:
        return hash((self.Key, self.Value))

    def __repr__(self) -> str:
        return f"KVPair({self.Key!r}, {self.Value!r})"


class SRV:
    """Go ``*net.SRV`` as returned by ``lookupSRV``."""

    __slots__ = ("Port", "Priority", "Target", "Weight")
    go_type: ClassVar[str] = "*net.SRV"
    go_fields: ClassVar[tuple[str, ...]] = ("Target", "Port", "Priority", "Weight")
    go_pointer: ClassVar[bool] = True

    def __init__(self, target: str, port: int, priority: int = 0, weight: int = 0) -> None:
        self.Target = target
        self.Port = Uint16(port)
        self.Priority = Uint16(priority)
        self.Weight = Uint16(weight)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SRV) and (
            self.Target, self.Port, self.Priority, self.Weight
        ) == (other.Target, other.Port, other.Priority, other.Weight)

    def __hash__(self) -> int:
        return hash((self.Target, self.Port, self.Priority, self.Weight))

    def __repr__(self) -> str:
        return f"SRV({self.Target!r}, {self.Port}, {self.Priority}, {self.Weight})"


def struct_fields(value: Any) -> tuple[str, ...] | None:
    """The exported field names if ``value`` is struct-like, else ``None``.

    Our own Go-shaped classes declare ``go_fields``; a dataclass instance passed
    in as template data is treated as a struct of its fields.
    """
    fields: tuple[str, ...] | None = getattr(type(value), "go_fields", None)
    if fields is not None:
        return fields
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(f.name for f in dataclasses.fields(value))
    return None


def go_type_name(value: Any) -> str:
    """``reflect.TypeOf(value).String()`` for our representation of ``value``."""
    t = type(value)
    if t is str:
        return "string"
    if t is int:
        return "int"
    if t is bool:
        return "bool"
    if t is float:
        return "float64"
    if value is None:
        return "<nil>"
    if value is IFACE_NIL:
        return "interface {}"
    named: str | None = getattr(t, "go_type", None)
    if named is not None:
        return named
    if t is list or t is tuple:
        return "[]interface {}"
    if t is dict:
        return "map[string]interface {}"
    if t is complex:
        return "complex128"
    if callable(value):
        return "func(...interface {}) (interface {}, error)"
    if dataclasses.is_dataclass(value):
        return t.__name__
    return t.__name__


def is_slice(value: Any) -> bool:
    """Is ``value`` a Go slice (any of our list types, or a tuple)?"""
    return isinstance(value, list | tuple)


def is_true(value: Any) -> bool:
    """Go's truth for ``if``/``with``/``and``/``or``/``not``.

    The zero value of the type is false: ``false``, ``0``, ``""``, nil and empty
    slices and maps.  Structs are always true, and -- unlike Python -- the
    string ``"0"`` is true.
    """
    if value is None or value is IFACE_NIL:
        return False
    if isinstance(value, str | list | dict | tuple):
        return len(value) > 0
    if isinstance(value, int | float | complex):
        return value != 0
    return True


# --------------------------------------------------------------------------
# Go types as function parameter types.

K_BOOL: Final = 1
K_INT: Final = 2
K_UINT: Final = 3
K_FLOAT: Final = 4
K_COMPLEX: Final = 5
K_STRING: Final = 6
K_IFACE: Final = 7  # interface{}
K_VALUE: Final = 8  # reflect.Value (the builtins that see untyped values)
K_SLICE: Final = 9
K_MAP: Final = 10
K_STRUCT: Final = 11
K_PTR: Final = 12
K_NONE: Final = 13  # "no type": Go's validateType(v, nil)


class GoType:
    """A Go parameter type: its name (for error messages), kind and assignability.

    ``check`` tells whether a Python value is assignable to the type;
    ``zero`` builds the zero value when an untyped nil is passed (``None`` when
    the type cannot be nil, which makes nil an error).
    """

    __slots__ = ("any", "check", "exact", "kind", "name", "zero")

    def __init__(
        self,
        name: str,
        kind: int,
        check: Callable[[Any], bool] | None = None,
        zero: Callable[[], Any] | None = None,
        exact: type | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.check = check
        self.zero = zero
        #: a Python type whose instances are always assignable (a fast path)
        self.exact = exact
        self.any = kind in (K_IFACE, K_VALUE, K_NONE)

    def __repr__(self) -> str:
        return f"GoType({self.name!r})"


def _nil() -> Any:
    return None


T_STRING: Final = GoType("string", K_STRING, lambda v: type(v) is str, exact=str)
T_INT: Final = GoType("int", K_INT, lambda v: type(v) is int, exact=int)
T_BOOL: Final = GoType("bool", K_BOOL, lambda v: type(v) is bool, exact=bool)
T_FLOAT64: Final = GoType("float64", K_FLOAT, lambda v: type(v) is float, exact=float)
T_IFACE: Final = GoType("interface {}", K_IFACE, zero=_nil)
T_VALUE: Final = GoType("reflect.Value", K_VALUE, zero=_nil)
T_NONE: Final = GoType("<nil>", K_NONE, zero=_nil)
T_STRSLICE: Final = GoType(
    "[]string", K_SLICE, lambda v: type(v) is StrSlice, StrSlice, exact=StrSlice
)
# KVPairs and []KVPair have identical underlying types, one of them unnamed:
# each is assignable to the other.
T_KVSLICE: Final = GoType(
    "[]memkv.KVPair", K_SLICE, lambda v: type(v) in (KVPairSlice, KVPairs), KVPairSlice
)


class GoFunc:
    """A function callable from a template, with the Go signature it declares.

    ``params`` are the fixed parameter types, ``variadic`` the element type of
    a final ``...`` parameter.  The signature matters: Go type-checks every
    argument before the call (``expected string; found -1``), and a literal
    argument is converted according to the parameter's kind (``add 1.0 2``
    works because ``1.0`` is an integral constant).

    With ``ctx=True`` the function receives the render context first (the
    store, the environment, the hooks).  ``special`` marks the builtins that
    the evaluator implements itself (``and``/``or`` short-circuit, ``call``).
    Raise :class:`GoError` to return an error.
    """

    __slots__ = ("ctx", "fn", "params", "special", "variadic")

    def __init__(
        self,
        fn: Callable[..., Any],
        params: tuple[GoType, ...] = (),
        variadic: GoType | None = None,
        *,
        ctx: bool = False,
        special: str | None = None,
    ) -> None:
        self.fn = fn
        self.params = params
        self.variadic = variadic
        self.ctx = ctx
        self.special = special

    def bind(self, receiver: Any) -> GoFunc:
        """This method bound to ``receiver``."""

        def bound(*args: Any) -> Any:
            return self.fn(receiver, *args)

        return GoFunc(bound, self.params, self.variadic)

    def __repr__(self) -> str:
        params = ", ".join(p.name for p in self.params)
        if self.variadic is not None:
            params += (", " if params else "") + "..." + self.variadic.name
        return f"GoFunc({getattr(self.fn, '__name__', '?')}({params}))"
