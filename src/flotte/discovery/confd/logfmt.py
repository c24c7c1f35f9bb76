"""confd's log line format, so existing log scrapers keep matching.

confd (logrus) prints ``<RFC3339 time> <hostname> <argv0>[<pid>]: <LEVEL> <message>``,
for example ``2015-06-01T10:00:00Z web1 confd[42]: INFO Target config
/etc/nginx/nginx.conf has been updated``.  We print the same shape with
``flotte-confd`` as the program name.

Under a service manager (``INVOCATION_ID`` set: systemd and flotte's
supervisor both set it) the journal already stamps every line with time,
host and pid, so only ``<LEVEL> <message>`` is printed.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from datetime import datetime
from typing import Final, TextIO

PROGRAM: Final = "flotte-confd"
_LEVEL_NAMES: Final = {logging.CRITICAL: "FATAL", logging.ERROR: "ERROR",
                       logging.WARNING: "WARNING", logging.INFO: "INFO",
                       logging.DEBUG: "DEBUG"}


class ConfdFormatter(logging.Formatter):
    """One line per record in confd's format; multi-line messages are indented.

    ``bare`` drops the time/host/program prefix (for a journal that adds its own).
    """

    def __init__(self, program: str = PROGRAM, *, bare: bool = False) -> None:
        super().__init__()
        self.host = socket.gethostname()
        self.program = program
        self.bare = bare

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        message = record.getMessage().replace("\n", "\n    ")
        if record.exc_info:
            message += "\n    " + self.formatException(record.exc_info).replace("\n", "\n    ")
        if self.bare:
            return f"{level} {message}"
        stamp = datetime.fromtimestamp(record.created).astimezone()
        when = stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
        return f"{when} {self.host} {self.program}[{os.getpid()}]: {level} {message}"


def setup(level: int, stream: TextIO | None = None, *, bare: bool | None = None
          ) -> logging.Logger:
    """Send the ``flotte.confd`` logger to ``stream`` (stderr) at ``level``; idempotent.

    ``bare`` defaults to "running as a service" (see the module docs).
    """
    if bare is None:
        bare = bool(os.environ.get("INVOCATION_ID"))
    logger = logging.getLogger("flotte.confd")
    for handler in list(logger.handlers):
        if getattr(handler, "_flotte_confd", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(ConfdFormatter(bare=bare))
    handler._flotte_confd = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


__all__ = ["PROGRAM", "ConfdFormatter", "setup"]
