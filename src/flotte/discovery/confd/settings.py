"""``flotte confd`` settings: defaults, ``confd.toml``, flags, and which backend to use.

Precedence is **flags > environment > confd.toml > defaults**, the order
confd documents and v0.15 implemented.  confd v0.16 decodes the file *over*
the parsed flags, so a key in the file beats an explicit flag there (spec
``confd.md`` §2); we deliberately follow the documentation instead, so
``-interval 5`` on a command line always means 5.

``confd.toml`` keys are top-level and matched without case, with confd's
spellings (``sync-only`` and ``log-level`` with hyphens, ``keepstagefile``);
an old ``[confd]`` table is ignored with a warning, as confd ignores it.
Keys of confd backends flotte does not have (consul, vault, SRV discovery…)
are reported, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

DEFAULT_CONFDIR: Final = "/etc/confd"
DEFAULT_CONFIG_FILE: Final = "/etc/confd/confd.toml"
DEFAULT_INTERVAL: Final = 600.0
DEFAULT_ETCD_NODE: Final = "http://127.0.0.1:2379"

#: confd's backends; only the first group exists in flotte.
FLOTTE_BACKENDS: Final = ("flotte", "api")
ETCD_BACKENDS: Final = ("etcd", "etcdv3")
OTHER_CONFD_BACKENDS: Final = ("consul", "env", "file", "redis", "zookeeper", "rancher",
                               "vault", "dynamodb", "ssm")

LOG_LEVELS: Final[dict[str, int]] = {
    "panic": logging.CRITICAL, "fatal": logging.CRITICAL, "error": logging.ERROR,
    "warn": logging.WARNING, "warning": logging.WARNING, "info": logging.INFO,
    "debug": logging.DEBUG,
}


class ConfigError(Exception):
    """A setting that cannot be used; the message says where and what to write instead."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one ``flotte confd`` run needs to know (see the module docs for sources).

    ``backend`` ``""`` means "choose": etcd when nodes were given (the seed's
    ``confd -node=http://…:4001`` without ``-backend``), else the flotte API.
    ``debounce``/``debounce_max``: in watch mode a resource is rendered once
    its keys have been quiet for ``debounce`` seconds, and at the latest
    ``debounce_max`` seconds after the first change of a burst.  ``poll`` is
    how often watch mode re-reads keys through the flotte API, which has no
    key watch.  ``cmd_timeout`` bounds check_cmd and reload_cmd (confd waits
    forever, issue #360).  ``interval_explicit`` records whether an interval
    was asked for: in watch mode it then adds a periodic full re-render.
    """

    backend: str = ""
    nodes: tuple[str, ...] = ()
    prefix: str = ""
    prefix_join: bool = False
    confdir: str = DEFAULT_CONFDIR
    config_file: str = DEFAULT_CONFIG_FILE
    interval: float = DEFAULT_INTERVAL
    interval_explicit: bool = False
    watch: bool = False
    onetime: bool = False
    noop: bool = False
    sync_only: bool = False
    keep_stage_file: bool = False
    log_level: str = "info"
    debounce: float = 0.1
    debounce_max: float = 1.0
    poll: float = 0.25
    cmd_timeout: float = 60.0
    username: str = ""
    password: str = ""
    client_cert: str = ""
    client_key: str = ""
    client_cakeys: str = ""

    @property
    def mode(self) -> Literal["onetime", "watch", "interval"]:
        """The run mode; ``-onetime`` wins over ``-watch`` (as in confd)."""
        if self.onetime:
            return "onetime"
        return "watch" if self.watch else "interval"


FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Settings))


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_bool(v: object) -> bool:
    return isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_str_list(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: confd.toml key (lower case) → (Settings field, type check, what to write).
_FILE_KEYS: Final[dict[str, tuple[str, Callable[[object], bool], str]]] = {
    "backend": ("backend", _is_str, 'a string, e.g. backend = "etcdv3"'),
    "nodes": ("nodes", _is_str_list, 'an array of strings, e.g. nodes = ["http://127.0.0.1:2379"]'),
    "prefix": ("prefix", _is_str, 'a string, e.g. prefix = "/production"'),
    "confdir": ("confdir", _is_str, 'a string, e.g. confdir = "/etc/confd"'),
    "interval": ("interval", _is_number, "a number of seconds, e.g. interval = 60"),
    "watch": ("watch", _is_bool, "true or false"),
    "noop": ("noop", _is_bool, "true or false"),
    "sync-only": ("sync_only", _is_bool, "true or false"),
    "sync_only": ("sync_only", _is_bool, "true or false"),
    "log-level": ("log_level", _is_str, 'a string, e.g. log-level = "debug"'),
    "log_level": ("log_level", _is_str, 'a string, e.g. log-level = "debug"'),
    "keepstagefile": ("keep_stage_file", _is_bool, "true or false"),
    "keep-stage-file": ("keep_stage_file", _is_bool, "true or false"),
    "keep_stage_file": ("keep_stage_file", _is_bool, "true or false"),
    "username": ("username", _is_str, "a string"),
    "password": ("password", _is_str, "a string"),
    "client_cert": ("client_cert", _is_str, "a file path"),
    "client_key": ("client_key", _is_str, "a file path"),
    "client_cakeys": ("client_cakeys", _is_str, "a file path"),
    # flotte's own
    "prefix_join": ("prefix_join", _is_bool, "true or false"),
    "debounce": ("debounce", lambda v: _is_number(v) or _is_str(v),
                 'seconds, or "MIN:MAX" seconds, e.g. debounce = "0.1:1"'),
    "poll": ("poll", _is_number, "a number of seconds, e.g. poll = 0.25"),
    "cmd_timeout": ("cmd_timeout", _is_number, "a number of seconds, e.g. cmd_timeout = 60"),
}
#: confd.toml keys of confd features flotte does not have.
_UNSUPPORTED_FILE_KEYS: Final = frozenset({
    "srv_domain", "srv_record", "scheme", "auth_token", "auth_type", "app_id", "user_id",
    "role_id", "secret_id", "path", "table", "separator", "file", "filter", "client_insecure",
    "secret_keyring", "basic_auth",
})


def parse_debounce(value: object) -> tuple[float, float]:
    """``0.1`` → (0.1, 1.0); ``"0.1:2"`` → (0.1, 2.0).  Without MAX it is 10 × MIN.

    Raises :class:`ConfigError`.
    """
    text = str(value).strip()
    lo_text, sep, hi_text = text.partition(":")
    try:
        lo = float(lo_text)
        hi = float(hi_text) if sep else lo * 10
    except ValueError:
        raise ConfigError(f"debounce {value!r}: write seconds or MIN:MAX seconds, e.g. "
                          "0.1 or 0.1:1") from None
    if not (0 <= lo <= hi) or hi != hi or hi == float("inf"):
        raise ConfigError(f"debounce {value!r}: need 0 <= MIN <= MAX (finite seconds)")
    return lo, hi


def _line_of(text: str, key: str) -> int | None:
    rx = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*=', re.IGNORECASE)
    for number, line in enumerate(text.splitlines(), 1):
        if rx.match(line):
            return number
    return None


def parse_config_file(text: str, path: str) -> tuple[dict[str, Any], list[str]]:
    """``confd.toml`` text → (settings fields it sets, warnings).  Raises :class:`ConfigError`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    values: dict[str, Any] = {}
    warnings: list[str] = []
    seen: dict[str, str] = {}
    for key, value in doc.items():
        low = key.lower()
        line = _line_of(text, key)
        where = f"{path}:{line}" if line else path
        if low in _FILE_KEYS:
            name, check, expect = _FILE_KEYS[low]
            if name in seen:
                raise ConfigError(f"{where}: {key!r} sets {name} again (already set by "
                                  f"{seen[name]!r}); keep one")
            seen[name] = key
            if not check(value):
                raise ConfigError(f"{where}: {key} must be {expect}")
            if name == "debounce":
                values["debounce"], values["debounce_max"] = parse_debounce(value)
            elif name == "nodes":
                values[name] = tuple(value)
            elif name == "interval":
                values[name] = float(value)
                values["interval_explicit"] = True
            elif name in ("poll", "cmd_timeout"):
                values[name] = float(value)
            else:
                values[name] = value
        elif low == "confd" and isinstance(value, dict):
            warnings.append(f"{where}: the [confd] table is ignored (confd reads top-level "
                            "keys since 0.5): move its keys above any [table]")
        elif low in _UNSUPPORTED_FILE_KEYS:
            warnings.append(f"{where}: {key!r} is ignored: flotte confd has no "
                            f"{'SRV discovery' if low.startswith('srv') else 'such backend option'}")
        else:
            warnings.append(f"{where}: unknown key {key!r} is ignored")
    return values, warnings


def read_config_file(path: str, *, required: bool) -> tuple[dict[str, Any], list[str]]:
    """Read ``confd.toml``; a missing default file is fine (confd logs it at debug).

    ``required`` (the user named the file) makes a missing file an error.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found (given with -config-file)"
                              ) from None
        return {}, []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    return parse_config_file(text, path)


def merge(defaults: Settings, file_values: Mapping[str, Any],
          flag_values: Mapping[str, Any]) -> Settings:
    """Flags (and environment) over the file over the defaults; pure.

    ``flag_values`` holds only what was explicitly given on the command line
    or through the environment, so an untouched flag never hides the file.
    """
    for source in (file_values, flag_values):
        unknown = set(source) - FIELDS
        if unknown:
            raise ValueError(f"not settings: {', '.join(sorted(unknown))}")
    merged = dataclasses.replace(defaults, **{**dict(file_values), **dict(flag_values)})
    if "interval" in file_values or "interval" in flag_values:
        merged = dataclasses.replace(merged, interval_explicit=True)
    return merged


def validate(settings: Settings) -> Settings:
    """Check ranges and names; returns ``settings`` with a normalised backend and log level."""
    if settings.interval <= 0:
        raise ConfigError(f"interval {settings.interval:g}: must be a positive number of seconds")
    if settings.poll <= 0:
        raise ConfigError(f"poll {settings.poll:g}: must be a positive number of seconds")
    if settings.cmd_timeout <= 0:
        raise ConfigError(f"cmd-timeout {settings.cmd_timeout:g}: must be a positive number "
                          "of seconds")
    level = settings.log_level.strip().lower() or "info"
    if level not in LOG_LEVELS:
        raise ConfigError(f"log-level {settings.log_level!r}: choose one of panic, fatal, error, "
                          "warn, info, debug")
    backend = settings.backend.strip().lower()
    if backend in OTHER_CONFD_BACKENDS:
        raise ConfigError(f"backend {backend!r} is not supported by flotte confd: use "
                          "-backend etcdv3 -node http://host:2379, or no -backend for the "
                          "flotte API")
    if backend and backend not in FLOTTE_BACKENDS + ETCD_BACKENDS:
        raise ConfigError(f"unknown backend {settings.backend!r}: use flotte (the default: the "
                          "flotte API) or etcdv3 (also spelled etcd)")
    return dataclasses.replace(settings, backend=backend, log_level=level)


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Where keys come from: ``("flotte", endpoint or "")`` or ``("etcd", registry URL)``."""

    kind: Literal["flotte", "etcd"]
    url: str


def _split_nodes(nodes: Sequence[str]) -> list[str]:
    return [n.strip() for node in nodes for n in node.split(",") if n.strip()]


def etcd_url(nodes: Sequence[str], settings: Settings | None = None) -> str:
    """confd ``-node`` values → one ``etcd://h:p,h:p`` registry URL.

    ``http://h:p`` → ``etcd://``, ``https://`` → ``etcds://``; a bare
    ``h:p`` (etcdv3's default form) is plain; ``etcd(s)://`` passes through.
    A node without a port gets 2379.  Credentials and client certificates
    from the settings become the URL's query.  Raises :class:`ConfigError`.
    """
    endpoints: list[str] = []
    tls: bool | None = None
    for node in _split_nodes(nodes):
        raw = node if "://" in node else "http://" + node
        parts = urlsplit(raw)
        scheme = parts.scheme.lower()
        if scheme in ("http", "etcd"):
            node_tls = False
        elif scheme in ("https", "etcds"):
            node_tls = True
        else:
            raise ConfigError(f"node {node!r}: use http://host:port or https://host:port")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"node {node!r}: write only scheme://host:port")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"node {node!r}: bad port") from None
        host = parts.hostname
        if not host:
            raise ConfigError(f"node {node!r} names no host")
        if tls is not None and node_tls != tls:
            raise ConfigError("nodes mix http:// and https://; use one scheme for the cluster")
        tls = node_tls
        shown = f"[{host}]" if ":" in host else host
        endpoints.append(f"{shown}:{port or 2379}")
    if not endpoints:
        raise ConfigError("no etcd node given: pass -node http://host:2379")
    query: list[str] = []
    if settings is not None:
        for name, value in (("ca", settings.client_cakeys), ("cert", settings.client_cert),
                            ("key", settings.client_key), ("user", settings.username),
                            ("password", settings.password)):
            if value:
                query.append(f"{name}={quote(value, safe='/')}")
    url = f"{'etcds' if tls else 'etcd'}://{','.join(endpoints)}"
    return url + ("?" + "&".join(query) if query else "")


def resolve_backend(settings: Settings, env: Mapping[str, str]) -> BackendSpec:
    """Which backend a run uses (see :class:`Settings` for the ``""`` rule)."""
    backend = settings.backend or ("etcd" if settings.nodes else "flotte")
    if backend in FLOTTE_BACKENDS:
        nodes = _split_nodes(settings.nodes)
        if len(nodes) > 1:
            raise ConfigError("the flotte backend takes one -node (an API endpoint such as "
                              "unix:///var/lib/flotte/flotte.sock); for etcd add -backend etcdv3")
        return BackendSpec("flotte", nodes[0] if nodes else "")
    nodes = list(settings.nodes)
    if not nodes:
        peers = env.get("ETCDCTL_ENDPOINTS") or env.get("ETCDCTL_PEERS") or DEFAULT_ETCD_NODE
        nodes = [peers]
    return BackendSpec("etcd", etcd_url(nodes, settings))


__all__ = ["DEFAULT_CONFDIR", "DEFAULT_CONFIG_FILE", "DEFAULT_INTERVAL", "LOG_LEVELS",
           "BackendSpec", "ConfigError", "Settings", "etcd_url", "merge", "parse_config_file",
           "parse_debounce", "read_config_file", "resolve_backend", "validate"]
