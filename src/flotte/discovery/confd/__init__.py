"""``flotte confd``: confd 0.16-compatible configuration templating, on flotte's registry.

A confdir (``conf.d/*.toml`` template resources + ``templates/``) works
unchanged; keys come from the flotte API (default) or etcd v3.  The pieces:

* :mod:`.resource`: loading ``conf.d`` (TOML resources, confd's quirks);
* :mod:`.settings`: flags, ``confd.toml``, precedence, backend choice;
* :mod:`.sync`: processing one resource (render, stage, compare, check,
  swap, reload) with the decisions as pure functions;
* :mod:`.backends`: reading and watching keys (registry or API);
* :mod:`.runner`: onetime, interval and watch modes (coalesced);
* :mod:`.logfmt`: confd's log line format.

Library use (what the CLI does)::

    confd = Confd(settings, RegistryBackend(registry))
    code = await confd.run()

See ``docs/confd.md`` for usage and the differences from confd.
"""

from flotte.discovery.confd.backends import (
    ApiBackend,
    Backend,
    BackendError,
    Change,
    RegistryBackend,
    Snapshot,
)
from flotte.discovery.confd.resource import (
    ResourceError,
    TemplateResource,
    load_confdir,
    load_resource,
    parse_mode,
    parse_resource,
)
from flotte.discovery.confd.runner import Confd
from flotte.discovery.confd.settings import (
    BackendSpec,
    ConfigError,
    Settings,
    merge,
    read_config_file,
    resolve_backend,
    validate,
)
from flotte.discovery.confd.sync import (
    Actions,
    FileState,
    Outcome,
    Processor,
    Result,
    decide,
    differences,
)

__all__ = [
    "Actions",
    "ApiBackend",
    "Backend",
    "BackendError",
    "BackendSpec",
    "Change",
    "Confd",
    "ConfigError",
    "FileState",
    "Outcome",
    "Processor",
    "RegistryBackend",
    "ResourceError",
    "Result",
    "Settings",
    "Snapshot",
    "TemplateResource",
    "decide",
    "differences",
    "load_confdir",
    "load_resource",
    "merge",
    "parse_mode",
    "parse_resource",
    "read_config_file",
    "resolve_backend",
    "validate",
]
