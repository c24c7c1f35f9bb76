"""Service discovery: announcing services, confd-compatible templating, proxying.

The templating engine (Go ``text/template`` plus confd's function library)
lives in :mod:`flotte.discovery.template`.
"""
