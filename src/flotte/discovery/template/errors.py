"""The two errors of the template engine, carrying Go's exact messages."""

from __future__ import annotations


class TemplateError(Exception):
    """The template does not parse.

    ``str(err)`` is Go's message, ``template: <name>:<line>: <message>``
    (confd logs it after ``Unable to process template <path>, ``).  ``line``
    is 1-based; ``col`` is the 0-based byte offset in that line of the token
    the parser stopped at (Go's message has no column; we keep one for
    editors).
    """

    def __init__(self, text: str, *, name: str, line: int, col: int, message: str) -> None:
        super().__init__(text)
        self.name = name
        self.line = line
        self.col = col
        self.message = message


class TemplateExecError(Exception):
    """Executing the template failed.

    ``str(err)`` is Go's message, for example
    ``template: nginx.tmpl:3:12: executing "nginx.tmpl" at <getv "/x">:
    error calling getv: key does not exist: /x``.  ``name`` is the file-level
    template name, ``executing`` the (possibly ``define``d) template that was
    running, ``line``/``col`` locate the node (``col`` is Go's 0-based byte
    offset), ``context`` is the node as Go prints it and ``reason`` the bare
    message after it.
    """

    def __init__(
        self,
        text: str,
        *,
        name: str,
        executing: str,
        line: int,
        col: int,
        context: str,
        reason: str,
    ) -> None:
        super().__init__(text)
        self.name = name
        self.executing = executing
        self.line = line
        self.col = col
        self.context = context
        self.reason = reason
