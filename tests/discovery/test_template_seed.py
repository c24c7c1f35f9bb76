"""The seed's confd template (chapter 10 of the CoreOS guide) renders like confd.

``nginx.conf.tmpl`` turns the ``/services/apache/<ip>`` keys that the
secretary sidekicks announce into an nginx upstream list.
"""

from __future__ import annotations

import re
from pathlib import Path

from discovery.vectors import REPO_ROOT, seed_dir
from flotte.discovery.template import compile, store_view

EXAMPLE = REPO_ROOT / "examples" / "seed" / "ch10" / "confd" / "templates" / "nginx.conf.tmpl"

SERVER_BLOCK = """
server {
    listen 80 default_server;
    listen [::]:80 default_server ipv6only=on;
    access_log /var/log/nginx/access.log upstreamlog;
    location / {
        proxy_pass http://apache_pool;
        proxy_redirect off;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;

    }
}
"""


def seed_template_from_guide() -> str:
    """The template as printed in chapter 10 of the seed text."""
    path = next(seed_dir().glob("000_*.txt"))
    text = path.read_text(encoding="utf-8")
    m = re.search(r"```yaml\n(# nginx\.conf\.tmpl\n.*?)```", text, re.S)
    assert m is not None, "chapter 10's nginx.conf.tmpl not found in the seed"
    return m.group(1)


def test_example_file_is_the_guides_template() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == seed_template_from_guide()


def render_seed(backend: dict[str, str]) -> str:
    # conf.d/nginx.toml: keys = [ "/services/apache" ], no prefix
    tmpl = compile(EXAMPLE.read_text(encoding="utf-8"), Path(EXAMPLE).name)
    return tmpl.render(store_view(backend, "/"), env={})


def test_seed_template_with_two_apaches() -> None:
    out = render_seed(
        {"/services/apache/10.0.0.2": "10.0.0.2:8082", "/services/apache/10.0.0.1": "10.0.0.1:8081"}
    )
    assert out == (
        "# nginx.conf.tmpl\n\nupstream apache_pool {\n\n"
        "    server 10.0.0.1:8081;\n\n"
        "    server 10.0.0.2:8082;\n\n"
        "}\n" + SERVER_BLOCK
    )


def test_seed_template_values_are_sorted_by_value_not_key() -> None:
    out = render_seed({"/services/apache/a": "10.0.0.9:80", "/services/apache/b": "10.0.0.1:80"})
    assert out.index("10.0.0.1:80") < out.index("10.0.0.9:80")


def test_seed_template_with_no_apache_left() -> None:
    # confd >= 0.10: no match is an empty list, not an error (spec §10)
    out = render_seed({"/services/other/x": "1"})
    assert out == "# nginx.conf.tmpl\n\nupstream apache_pool {\n\n}\n" + SERVER_BLOCK


def test_seed_template_ignores_deeper_keys() -> None:
    out = render_seed({"/services/apache/web1": "10.0.0.1:80", "/services/apache/x/y": "nope"})
    assert "nope" not in out
    assert "server 10.0.0.1:80;" in out


def test_seed_template_with_1000_upstreams() -> None:
    backend = {f"/services/apache/10.0.{i // 256}.{i % 256}": f"10.0.{i // 256}.{i % 256}:80" for i in range(1000)}
    tmpl = compile(EXAMPLE.read_text(encoding="utf-8"), "nginx.conf.tmpl")
    store = store_view(backend, "/")
    out = tmpl.render(store, env={})
    assert out.count("    server ") == 1000  # speed: bench/confd.py, not a test
