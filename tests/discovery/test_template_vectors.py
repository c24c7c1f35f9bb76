"""Every vector of ``confd-vectors.json`` (spec §7) is a test.

A vector has a template, the store view (keys after prefix stripping) and
either the expected output or, with ``expected: null``, the exact error confd
logs.  Parse errors are logged by confd's resource layer with a prefix
(``Unable to process template <path>, ``) that we add here the same way.  The
two DNS-dependent vectors list acceptable ``alternatives``; the resolver is a
hook, so both resolver shapes (IPv4 only, dual stack) are exercised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from discovery.vectors import load_confd_vectors
from flotte.discovery.template import Hooks, TemplateError, TemplateExecError, compile

#: confd names a template after the base name of its ``src``.
NAME = "test.conf.tmpl"
PARSE_PREFIX = f"Unable to process template <templatedir>/{NAME}, "

VECTORS = load_confd_vectors()


def _resolver(addrs: Sequence[str]) -> Hooks:
    return Hooks(lookup_ip=lambda host: list(addrs) if host == "localhost" else [])


def render_vector(v: dict[str, Any], hooks: Hooks) -> tuple[str | None, str | None]:
    """(output, error) the way confd would report them."""
    try:
        tmpl = compile(v["template"], NAME)
    except TemplateError as e:
        return None, PARSE_PREFIX + str(e)
    try:
        return tmpl.render(v["keys"], env=v.get("env", {}), hooks=hooks), None
    except TemplateExecError as e:
        return None, str(e)


def test_vector_count() -> None:
    assert len(VECTORS) == 77
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    if vector.get("expected") is None and vector.get("error") is None:
        # host-dependent DNS vectors: any listed alternative is right
        alternatives = vector["alternatives"]
        for addrs in (["127.0.0.1"], ["127.0.0.1", "::1"], ["::1"]):
            out, err = render_vector(vector, _resolver(addrs))
            assert err is None
            if out not in alternatives:
                # The vector's notes: upstream's IPv6 alternative lacks the
                # leading blank line that the template itself produces.
                assert out in ["\n" + a for a in alternatives], (addrs, out)
        return
    out, err = render_vector(vector, _resolver(["127.0.0.1"]))
    assert (out, err) == (vector.get("expected"), vector.get("error"))


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v.get("error")], ids=lambda v: v["name"]
)
def test_error_vectors_locate_the_node(vector: dict[str, Any]) -> None:
    """The structured fields of an error agree with Go's message."""
    try:
        tmpl = compile(vector["template"], NAME)
    except TemplateError as e:
        assert str(e).startswith(f"template: {NAME}:{e.line}: ")
        return
    with pytest.raises(TemplateExecError) as info:
        tmpl.render(vector["keys"], env={})
    err = info.value
    assert str(err) == (
        f'template: {NAME}:{err.line}:{err.col}: executing "{err.executing}" '
        f"at <{err.context}>: {err.reason}"
    )
