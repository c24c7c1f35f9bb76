"""confd's template functions (v0.16.0), with memkv's store semantics.

The data model (spec §5.1) is a flat key/value store: ``key -> value``, keys
relative to the resource prefix and starting with ``/``.  Directories exist
only as key prefixes, so ``exists "/dir"`` is false and ``ls`` of a directory
without leaves is empty.

Behaviour copied from confd/memkv, including its quirks (spec §5.3-5.4):

* ``gets`` sorts pairs by key, ``getvs`` sorts *values* (not by key);
* ``*`` in a pattern never crosses ``/`` (Go's ``path.Match``);
* ``ls "/"`` lists only top-level leaves and ``lsdir "/"`` nothing;
* ``reverse`` reverses ``[]string`` and ``[]memkv.KVPair`` in place and
  returns anything else unchanged -- including the ``KVPairs`` that ``gets``
  returns, so ``reverse (gets ...)`` is a no-op;
* ``getv`` returns its default only for a *missing* key (an existing empty
  value stays empty); ``getenv`` returns its default for an unset *or empty*
  variable;
* ``json`` numbers are ``float64`` (``1000000`` prints ``1e+06``);
* arithmetic is Go's: 64-bit wrap-around, division truncating toward zero,
  and no coercion from strings (``add "1" 2`` is an error: use ``atoi``).

Functions that touch the world (``getenv``, ``datetime``, ``lookupIP*``,
``lookupSRV``, ``fileExists``) go through :class:`Hooks` so tests can pin them.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from flotte.unit import gopath

from .gojson import JSONError, unmarshal
from .gostrconv import atoi as go_atoi
from .gostrconv import byte_len, from_bytes, to_bytes
from .gostrconv import parse_bool as go_parse_bool
from .gotime import GoTime
from .values import SRV as SRVRecord
from .values import (
    T_IFACE,
    T_INT,
    T_KVSLICE,
    T_STRING,
    T_STRSLICE,
    GoError,
    GoFunc,
    IntSlice,
    KVPair,
    KVPairs,
    KVPairSlice,
    SRVSlice,
    StrSlice,
)

#: ``seq`` refuses to build more elements than this (Go would just allocate).
MAX_SEQ: Final = 10_000_000


def _default_lookup_ip(host: str) -> list[str]:
    seen: dict[str, None] = {}
    for info in socket.getaddrinfo(host, None):
        addr = str(info[4][0]).split("%", 1)[0]
        seen[addr] = None
    return list(seen)


def _default_lookup_srv(service: str, proto: str, name: str) -> list[SRVRecord]:
    # The standard library has no SRV resolver; tests and deployments inject one.
    raise OSError("no SRV resolver configured")


def _default_file_exists(path: str) -> bool:
    # Go's os.IsNotExist only matches ENOENT: a permission error or ENOTDIR
    # counts as "exists" (confd's util.IsFileExist).
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return True


def _default_now() -> datetime:
    return datetime.now().astimezone()


@dataclass(frozen=True)
class Hooks:
    """The world as templates see it; replace any of these in tests.

    ``lookup_ip`` returns the addresses of a host (raising ``OSError`` when
    resolution fails); ``lookup_srv`` returns SRV records for
    ``_service._proto.name`` (the standard library cannot resolve SRV
    records, so by default it fails and ``lookupSRV`` returns ``[]``).
    """

    lookup_ip: Callable[[str], Sequence[str]] = _default_lookup_ip
    lookup_srv: Callable[[str, str, str], Sequence[SRVRecord]] = _default_lookup_srv
    file_exists: Callable[[str], bool] = _default_file_exists
    now: Callable[[], datetime] = _default_now


DEFAULT_HOOKS: Final = Hooks()


@dataclass
class RenderContext:
    """What the store-aware functions see during one render."""

    store: Mapping[str, str]
    env: Mapping[str, str]
    hooks: Hooks = DEFAULT_HOOKS
    _items: list[tuple[str, str]] | None = field(default=None, repr=False)

    def items(self) -> list[tuple[str, str]]:
        """The store's pairs, read once per render."""
        if self._items is None:
            self._items = list(self.store.items())
        return self._items


def store_view(pairs: Mapping[str, str] | Iterable[tuple[str, str]], prefix: str) -> dict[str, str]:
    """The template's view of backend keys under ``prefix`` (confd §3, step 3).

    Every full key becomes ``path.Join("/", TrimPrefix(key, prefix))``, so a
    template reading resource prefix ``/production`` sees
    ``/production/nginx/domain`` as ``/nginx/domain``.  A leading ``/`` is
    added to the prefix, as confd does.
    """
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    out: dict[str, str] = {}
    for key, value in items:
        rel = key[len(prefix) :] if key.startswith(prefix) else key
        out[gopath.join("/", rel)] = value
    return out


# --------------------------------------------------------------------------
# memkv


def _not_exist(key: str) -> GoError:
    return GoError(f"key does not exist: {key}")


def _glob(ctx: RenderContext, pattern: str) -> list[tuple[str, str]]:
    """The pairs whose key matches ``pattern`` (unsorted)."""
    try:
        rx = gopath.compile_glob(pattern)
    except gopath.BadPatternError:
        # memkv only calls path.Match while iterating: an empty store never errs.
        if ctx.items():
            raise GoError(gopath.BAD_PATTERN) from None
        return []
    if rx is None:
        v = ctx.store.get(pattern)
        return [] if v is None else [(pattern, v)]
    match = rx.fullmatch
    return [(k, v) for k, v in ctx.items() if match(k)]


def get(ctx: RenderContext, key: str) -> KVPair:
    v = ctx.store.get(key)
    if v is None:
        raise _not_exist(key)
    return KVPair(key, v)


def gets(ctx: RenderContext, pattern: str) -> KVPairs:
    pairs = _glob(ctx, pattern)
    pairs.sort()
    return KVPairs([KVPair(k, v) for k, v in pairs])


def getv(ctx: RenderContext, key: str, *default: str) -> str:
    v = ctx.store.get(key)
    if v is None:
        if default:
            return default[0]
        raise _not_exist(key)
    return v


def getvs(ctx: RenderContext, pattern: str) -> StrSlice:
    values = [v for _, v in _glob(ctx, pattern)]
    values.sort()
    return StrSlice(values)


def exists(ctx: RenderContext, key: str) -> bool:
    return key in ctx.store


def _terms(p: str) -> list[str]:
    return gopath.clean(p).split("/")


def _same_prefix(prefix: list[str], test: list[str]) -> bool:
    return len(test) >= len(prefix) and test[: len(prefix)] == prefix


def _strip_key(key: str, prefix: str) -> str:
    key = key.removeprefix(prefix)
    return key.removeprefix("/")


def ls(ctx: RenderContext, path: str) -> StrSlice:
    prefix = _terms(path)
    names: set[str] = set()
    for key, _ in ctx.items():
        if key == path:
            names.add(gopath.base(key))
            continue
        if _same_prefix(prefix, _terms(gopath.dir(key))):
            names.add(_strip_key(key, path).split("/")[0])
    return StrSlice(sorted(names))


def lsdir(ctx: RenderContext, path: str) -> StrSlice:
    prefix = _terms(path)
    names: set[str] = set()
    for key, _ in ctx.items():
        if key.startswith(path):
            items = _terms(gopath.dir(key))
            if _same_prefix(prefix, items) and len(items) - len(prefix) >= 1:
                names.add(items[len(prefix)])
    return StrSlice(sorted(names))


# --------------------------------------------------------------------------
# strings, paths, encodings


def split(s: str, sep: str) -> StrSlice:
    if sep == "":
        return StrSlice(s)
    return StrSlice(s.split(sep))


def join(elems: list[str], sep: str) -> str:
    return sep.join(elems)


def _simple_case(s: str, upper: bool) -> str:
    if s.isascii():
        return s.upper() if upper else s.lower()
    out = []
    for c in s:
        m = c.upper() if upper else c.lower()
        out.append(m if len(m) == 1 else c)
    return "".join(out)


def to_upper(s: str) -> str:
    return _simple_case(s, True)


def to_lower(s: str) -> str:
    return _simple_case(s, False)


def contains(s: str, substr: str) -> bool:
    return substr in s


def replace(s: str, old: str, new: str, n: int) -> str:
    if old == new or n == 0:
        return s
    return s.replace(old, new, n if n > 0 else -1)


def trim_suffix(s: str, suffix: str) -> str:
    return s.removesuffix(suffix)


def json_object(data: str) -> dict[str, Any]:
    try:
        value: dict[str, Any] = unmarshal(data, "object")
    except JSONError as e:
        raise GoError(str(e)) from None
    return value


def json_array(data: str) -> list[Any]:
    try:
        value: list[Any] = unmarshal(data, "array")
    except JSONError as e:
        raise GoError(str(e)) from None
    return value


def create_map(*values: Any) -> dict[str, Any]:
    if len(values) % 2 != 0:
        raise GoError("invalid map call")
    out: dict[str, Any] = {}
    for i in range(0, len(values), 2):
        key = values[i]
        if type(key) is not str:
            raise GoError("map keys must be strings")
        out[key] = values[i + 1]
    return out


def getenv(ctx: RenderContext, key: str, *default: str) -> str:
    value = ctx.env.get(key, "")
    if value == "":
        return default[0] if default else ""
    return value


def date_time(ctx: RenderContext) -> GoTime:
    return GoTime(ctx.hooks.now())


def base64_encode(data: str) -> str:
    return base64.b64encode(to_bytes(data)).decode("ascii")


_B64_ALPHABET: Final = {c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def go_base64_decode(src: bytes) -> bytes:
    """``base64.StdEncoding.DecodeString`` with Go's error offsets.

    Go skips ``\\r`` and ``\\n`` anywhere and reports the first bad byte as
    ``illegal base64 data at input byte N``.
    """
    out = bytearray()
    si = 0
    n = len(src)
    while si < n:
        dbuf = [0, 0, 0, 0]
        dlen = 4
        j = 0
        trailing_err: int | None = None
        while j < 4:
            if si == n:
                if j == 0:
                    return bytes(out)
                raise GoError(f"illegal base64 data at input byte {si - j}")
            c = src[si]
            si += 1
            v = _B64_ALPHABET.get(c)
            if v is not None:
                dbuf[j] = v
                j += 1
                continue
            if c in (0x0A, 0x0D):
                continue
            if c != 0x3D:  # '='
                raise GoError(f"illegal base64 data at input byte {si - 1}")
            # padding
            if j in (0, 1):
                raise GoError(f"illegal base64 data at input byte {si - 1}")
            if j == 2:
                while si < n and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == n:
                    raise GoError(f"illegal base64 data at input byte {n}")
                if src[si] != 0x3D:
                    raise GoError(f"illegal base64 data at input byte {si - 1}")
                si += 1
            while si < n and src[si] in (0x0A, 0x0D):
                si += 1
            if si < n:
                trailing_err = si
            dlen = j
            break
        val = dbuf[0] << 18 | dbuf[1] << 12 | dbuf[2] << 6 | dbuf[3]
        b0, b1, b2 = (val >> 16) & 0xFF, (val >> 8) & 0xFF, val & 0xFF
        if dlen == 4:
            out += bytes((b0, b1, b2))
        elif dlen == 3:
            out += bytes((b0, b1))
        elif dlen == 2:
            out.append(b0)
        if trailing_err is not None:
            raise GoError(f"illegal base64 data at input byte {trailing_err}")
    return bytes(out)


def base64_decode(data: str) -> str:
    return from_bytes(go_base64_decode(to_bytes(data)))


def parse_bool(s: str) -> bool:
    try:
        return go_parse_bool(s)
    except ValueError as e:
        raise GoError(str(e)) from None


def atoi(s: str) -> int:
    try:
        return go_atoi(s)
    except ValueError as e:
        raise GoError(str(e)) from None


# --------------------------------------------------------------------------
# lists


def reverse(values: Any) -> Any:
    if type(values) is StrSlice or type(values) is KVPairSlice:
        values.reverse()
    return values


def sort_by_length(values: list[str]) -> list[str]:
    values.sort(key=byte_len)
    return values


def sort_kv_by_length(values: list[KVPair]) -> KVPairSlice:
    values.sort(key=lambda kv: byte_len(kv.Key))
    return values if type(values) is KVPairSlice else KVPairSlice(values)


def seq(first: int, last: int) -> IntSlice:
    if last - first >= MAX_SEQ:
        raise GoError(f"seq: more than {MAX_SEQ} elements")
    return IntSlice(range(first, last + 1))


# --------------------------------------------------------------------------
# arithmetic (Go int: 64 bits, wrapping)


def _wrap(x: int) -> int:
    if -(1 << 63) <= x < 1 << 63:
        return x
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def add(a: int, b: int) -> int:
    return _wrap(a + b)


def sub(a: int, b: int) -> int:
    return _wrap(a - b)


def mul(a: int, b: int) -> int:
    return _wrap(a * b)


def _quo(a: int, b: int) -> int:
    if b == 0:
        raise GoError("runtime error: integer divide by zero")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def div(a: int, b: int) -> int:
    return _wrap(_quo(a, b))


def mod(a: int, b: int) -> int:
    return _wrap(a - b * _quo(a, b))


# --------------------------------------------------------------------------
# the world


def lookup_ip(ctx: RenderContext, host: str) -> StrSlice:
    try:
        ips = [str(ip) for ip in ctx.hooks.lookup_ip(host)]
    except (OSError, UnicodeError, ValueError):
        return StrSlice()
    return StrSlice(sorted(ips))


def lookup_ipv4(ctx: RenderContext, host: str) -> StrSlice:
    return StrSlice(ip for ip in lookup_ip(ctx, host) if "." in ip)


def lookup_ipv6(ctx: RenderContext, host: str) -> StrSlice:
    return StrSlice(ip for ip in lookup_ip(ctx, host) if ":" in ip)


def lookup_srv(ctx: RenderContext, service: str, proto: str, name: str) -> SRVSlice:
    try:
        records = list(ctx.hooks.lookup_srv(service, proto, name))
    except (OSError, UnicodeError, ValueError):
        return SRVSlice()
    records.sort(key=lambda r: f"{r.Target}{r.Port}{r.Priority}{r.Weight}")
    return SRVSlice(records)


def file_exists(ctx: RenderContext, path: str) -> bool:
    return ctx.hooks.file_exists(path)


#: The functions confd adds to Go's builtins, with confd's Go signatures.
CONFD_FUNCS: Final[dict[str, GoFunc]] = {
    # memkv
    "exists": GoFunc(exists, (T_STRING,), ctx=True),
    "ls": GoFunc(ls, (T_STRING,), ctx=True),
    "lsdir": GoFunc(lsdir, (T_STRING,), ctx=True),
    "get": GoFunc(get, (T_STRING,), ctx=True),
    "gets": GoFunc(gets, (T_STRING,), ctx=True),
    "getv": GoFunc(getv, (T_STRING,), T_STRING, ctx=True),
    "getvs": GoFunc(getvs, (T_STRING,), ctx=True),
    # confd
    "base": GoFunc(gopath.base, (T_STRING,)),
    "split": GoFunc(split, (T_STRING, T_STRING)),
    "json": GoFunc(json_object, (T_STRING,)),
    "jsonArray": GoFunc(json_array, (T_STRING,)),
    "dir": GoFunc(gopath.dir, (T_STRING,)),
    "map": GoFunc(create_map, (), T_IFACE),
    "getenv": GoFunc(getenv, (T_STRING,), T_STRING, ctx=True),
    "join": GoFunc(join, (T_STRSLICE, T_STRING)),
    "datetime": GoFunc(date_time, (), ctx=True),
    "toUpper": GoFunc(to_upper, (T_STRING,)),
    "toLower": GoFunc(to_lower, (T_STRING,)),
    "contains": GoFunc(contains, (T_STRING, T_STRING)),
    "replace": GoFunc(replace, (T_STRING, T_STRING, T_STRING, T_INT)),
    "trimSuffix": GoFunc(trim_suffix, (T_STRING, T_STRING)),
    "lookupIP": GoFunc(lookup_ip, (T_STRING,), ctx=True),
    "lookupIPV4": GoFunc(lookup_ipv4, (T_STRING,), ctx=True),
    "lookupIPV6": GoFunc(lookup_ipv6, (T_STRING,), ctx=True),
    "lookupSRV": GoFunc(lookup_srv, (T_STRING, T_STRING, T_STRING), ctx=True),
    "fileExists": GoFunc(file_exists, (T_STRING,), ctx=True),
    "base64Encode": GoFunc(base64_encode, (T_STRING,)),
    "base64Decode": GoFunc(base64_decode, (T_STRING,)),
    "parseBool": GoFunc(parse_bool, (T_STRING,)),
    "reverse": GoFunc(reverse, (T_IFACE,)),
    "sortByLength": GoFunc(sort_by_length, (T_STRSLICE,)),
    "sortKVByLength": GoFunc(sort_kv_by_length, (T_KVSLICE,)),
    "add": GoFunc(add, (T_INT, T_INT)),
    "sub": GoFunc(sub, (T_INT, T_INT)),
    "div": GoFunc(div, (T_INT, T_INT)),
    "mod": GoFunc(mod, (T_INT, T_INT)),
    "mul": GoFunc(mul, (T_INT, T_INT)),
    "seq": GoFunc(seq, (T_INT, T_INT)),
    "atoi": GoFunc(atoi, (T_STRING,)),
}
