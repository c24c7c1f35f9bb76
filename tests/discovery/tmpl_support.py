"""Helpers for the template tests: render, and catch Go-style errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from flotte.discovery.template import (
    Hooks,
    TemplateError,
    TemplateExecError,
    compile,
)

NAME = "t.tmpl"

#: No DNS, no clock, no file system: tests that need them pass their own.
QUIET_HOOKS = Hooks(
    lookup_ip=lambda host: [],
    lookup_srv=lambda service, proto, name: [],
    file_exists=lambda path: False,
)


def render(
    text: str,
    store: Mapping[str, str] | None = None,
    *,
    data: Any = None,
    env: Mapping[str, str] | None = None,
    hooks: Hooks | None = None,
    **kw: Any,
) -> str:
    """Compile and render ``text`` with a deterministic world."""
    return compile(text, NAME, **kw).render(
        store or {}, data=data, env=env or {}, hooks=hooks or QUIET_HOOKS
    )


def exec_error(text: str, store: Mapping[str, str] | None = None, **kw: Any) -> TemplateExecError:
    """The execution error of ``text`` (which must parse)."""
    tmpl = compile(text, NAME)
    with pytest.raises(TemplateExecError) as info:
        tmpl.render(store or {}, env={}, hooks=QUIET_HOOKS, **kw)
    return info.value


def parse_error(text: str, **kw: Any) -> TemplateError:
    """The parse error of ``text``."""
    with pytest.raises(TemplateError) as info:
        compile(text, NAME, **kw)
    return info.value
