"""Where flotte keeps its state on a machine: one definition for the daemon and the CLI.

* ``$FLOTTE_STATE_DIR`` when set (the daemon's ``--state-dir`` environment
  variable, so ``FLOTTE_STATE_DIR=/srv/flotte flotte up`` and
  ``FLOTTE_STATE_DIR=/srv/flotte flotte list-units`` meet);
* root: ``/var/lib/flotte``;
* anyone else: ``$XDG_STATE_HOME/flotte``, or ``~/.local/state/flotte`` when
  ``XDG_STATE_HOME`` is unset or not absolute (the XDG rule).

The API's unix socket is ``<state dir>/flotte.sock`` and the token TCP
clients send is in ``<state dir>/api-token`` (written by the daemon, mode 0600).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: The daemon's system-wide state directory (root).
SYSTEM_STATE_DIR = Path("/var/lib/flotte")
SOCKET_NAME = "flotte.sock"
#: Overrides the state directory for the daemon and the CLI alike.
STATE_DIR_ENV = "FLOTTE_STATE_DIR"
#: The API token file in the state directory (the daemon writes it, the CLI reads it).
TOKEN_FILE = "api-token"


def default_state_dir(*, euid: int | None = None, env: Mapping[str, str] | None = None,
                      home: str | None = None) -> Path:
    """The state directory for this user (see the module docs).

    ``euid``, ``env`` and ``home`` default to the running process's; they are
    parameters so the rule can be tested without becoming root.
    """
    environ = os.environ if env is None else env
    explicit = environ.get(STATE_DIR_ENV, "")
    if explicit:
        return Path(os.path.abspath(explicit))
    uid = os.geteuid() if euid is None else euid
    if uid == 0:
        return SYSTEM_STATE_DIR
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "flotte"
    base = home if home is not None else environ.get("HOME") or os.path.expanduser("~")
    return Path(base) / ".local" / "state" / "flotte"


def default_socket(state_dir: Path | None = None) -> Path:
    """``<state dir>/flotte.sock``: where ``flotte up`` listens by default."""
    return (state_dir or default_state_dir()) / SOCKET_NAME


def default_endpoint(state_dir: Path | None = None) -> str:
    """The API endpoint the CLI uses when none is given: ``unix://<state dir>/flotte.sock``."""
    return f"unix://{default_socket(state_dir)}"


def token_path(state_dir: Path | None = None) -> Path:
    """``<state dir>/api-token``."""
    return (state_dir or default_state_dir()) / TOKEN_FILE


__all__ = ["SOCKET_NAME", "STATE_DIR_ENV", "SYSTEM_STATE_DIR", "TOKEN_FILE", "default_endpoint",
           "default_socket", "default_state_dir", "token_path"]
