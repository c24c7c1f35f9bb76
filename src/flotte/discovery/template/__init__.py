"""confd-compatible templates: Go ``text/template`` plus confd's functions.

A pure-Python reimplementation of Go's ``text/template`` (the Go 1.19
behaviour the confd test vectors were produced with, plus ``else with``) and
of confd v0.16's function library over a flat key/value store::

    from flotte.discovery.template import compile

    tmpl = compile(open("nginx.conf.tmpl").read(), "nginx.conf.tmpl")
    text = tmpl.render({"/services/apache/web1": "10.0.0.1:80"})

Parse once, render many times: :func:`compile` turns the template into
closures; :meth:`Template.render` runs them against a store (any
``Mapping[str, str]`` of keys relative to the resource prefix, see
:func:`store_view`).  Errors carry Go's messages: :class:`TemplateError`
(``template: x.tmpl:3: unexpected EOF``) and :class:`TemplateExecError`
(``template: x.tmpl:2:2: executing "x.tmpl" at <getv "/k">: error calling
getv: key does not exist: /k``).

Only ``getenv``, ``datetime``, ``lookupIP*``, ``lookupSRV`` and ``fileExists``
look at the world, through ``env=`` and :class:`Hooks`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .confd import CONFD_FUNCS, DEFAULT_HOOKS, Hooks, RenderContext, store_view
from .engine import Compiled, Compiler, Source, State
from .errors import TemplateError, TemplateExecError
from .gofuncs import BUILTINS
from .gostrconv import quote
from .gotime import GoTime, Month, Weekday
from .parser import ParseError, parse
from .values import (
    SRV,
    T_BOOL,
    T_FLOAT64,
    T_IFACE,
    T_INT,
    T_STRING,
    T_STRSLICE,
    GoError,
    GoFunc,
    GoType,
    IntSlice,
    KVPair,
    KVPairs,
    KVPairSlice,
    StrSlice,
)

__all__ = [
    "SRV",
    "T_BOOL",
    "T_FLOAT64",
    "T_IFACE",
    "T_INT",
    "T_STRING",
    "T_STRSLICE",
    "GoError",
    "GoFunc",
    "GoTime",
    "GoType",
    "Hooks",
    "IntSlice",
    "KVPair",
    "KVPairSlice",
    "KVPairs",
    "Month",
    "StrSlice",
    "Template",
    "TemplateError",
    "TemplateExecError",
    "Weekday",
    "compile",
    "store_view",
]

FuncSpec = GoFunc | Callable[..., Any]


def _as_gofunc(f: FuncSpec) -> GoFunc:
    """A plain callable takes any number of ``interface{}`` arguments."""
    if isinstance(f, GoFunc):
        return f
    return GoFunc(f, (), T_IFACE)


def _func_table(confd: bool, extra: Mapping[str, FuncSpec] | None) -> dict[str, GoFunc]:
    table = dict(BUILTINS)
    if confd:
        table.update(CONFD_FUNCS)
    if extra:
        table.update({name: _as_gofunc(f) for name, f in extra.items()})
    return table


class Template:
    """A compiled template (and the templates it ``define``s)."""

    __slots__ = ("_funcs", "_source", "_templates", "name", "text")

    def __init__(
        self,
        name: str,
        text: str,
        source: Source,
        templates: dict[str, Compiled],
        funcs: dict[str, GoFunc],
    ) -> None:
        self.name = name
        self.text = text
        self._source = source
        self._templates = templates
        self._funcs = funcs

    @property
    def defined(self) -> tuple[str, ...]:
        """Names of all templates in the set (the file's own name included)."""
        return tuple(sorted(self._templates))

    def render(
        self,
        store: Mapping[str, str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        funcs: Mapping[str, FuncSpec] | None = None,
        hooks: Hooks | None = None,
        data: Any = None,
        template: str | None = None,
    ) -> str:
        """Execute the template against ``store`` and return the text.

        ``store`` maps keys (relative to the prefix, with a leading ``/``) to
        values.  ``env`` is what ``getenv`` sees (default: ``os.environ``).
        ``funcs`` replaces function implementations for this render (names
        must have existed at :func:`compile` time, as Go checks them while
        parsing).  ``data`` is ``.`` and ``$`` (confd passes nil, which prints
        ``<no value>``).  ``template`` executes a ``define``d template instead.

        Raises :class:`TemplateExecError`.
        """
        table = self._funcs
        if funcs:
            table = dict(table)
            table.update({name: _as_gofunc(f) for name, f in funcs.items()})
        ctx = RenderContext(
            store if store is not None else {},
            env if env is not None else os.environ,
            hooks if hooks is not None else DEFAULT_HOOKS,
        )
        name = self.name if template is None else template
        tmpl = self._templates.get(name)
        if tmpl is None:
            raise TemplateExecError(
                f"template: no template {quote(name)} associated with template "
                f"{quote(self.name)}",
                name=self.name,
                executing=name,
                line=0,
                col=0,
                context="",
                reason="no such template",
            )
        st = State(self._source, self._templates, tmpl, table, ctx, data)
        try:
            tmpl.body(st, data)
        except RecursionError:
            raise TemplateExecError(
                f"template: {self.name}: exceeded maximum nesting depth",
                name=self.name,
                executing=st.tmpl.name,
                line=0,
                col=0,
                context="",
                reason="exceeded maximum nesting depth",
            ) from None
        return "".join(st.out)

    def __repr__(self) -> str:
        return f"Template({self.name!r})"


def compile(
    text: str,
    name: str = "template",
    *,
    funcs: Mapping[str, FuncSpec] | None = None,
    confd: bool = True,
) -> Template:
    """Parse ``text`` (named ``name`` in error messages) into a :class:`Template`.

    ``confd=False`` gives plain ``text/template`` (what confd uses to expand
    ``{{.src}}`` in ``check_cmd``); ``funcs`` adds or replaces functions: a
    :class:`GoFunc` declares a Go signature, a plain callable accepts any
    arguments.

    Raises :class:`TemplateError`.
    """
    table = _func_table(confd, funcs)
    source = Source(name, text)
    try:
        trees = parse(text, name, table)
    except ParseError as e:
        _, col = source.locate(min(e.pos, len(text)))
        raise TemplateError(
            e.message, name=name, line=e.line, col=col, message=e.reason
        ) from None
    except RecursionError:
        raise TemplateError(
            f"template: {name}: max nesting depth exceeded",
            name=name,
            line=0,
            col=0,
            message="max nesting depth exceeded",
        ) from None
    compiler = Compiler(table)
    templates = {tname: Compiled(tname, compiler.compile_list(tree.root)) for tname, tree in trees.items()}
    return Template(name, text, source, templates, table)

