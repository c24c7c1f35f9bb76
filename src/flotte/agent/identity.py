"""Who this machine is: machine id, hostname, public IP and metadata.

The machine id decides which units run here, so where it comes from matters:

1. ``--machine-id`` (tests, simulated machines);
2. ``<state dir>/machine-id``, written on first start — so two agents on one
   host with their own state dirs are two machines, and an id survives
   restarts;
3. ``/etc/machine-id`` (what fleet used) on first start, copied into the
   state dir;
4. a random id (stored), when the host has none (containers).

Cloned VMs share ``/etc/machine-id`` (fleet issue #1346); registration then
fails with an error that says how to fix it (see :mod:`flotte.agent.agent`).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_ID = re.compile(r"^[0-9a-f]{32}$")
_META_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


class IdentityError(ValueError):
    """A flag or file gives an unusable identity; the message says which and how to fix it."""


@dataclass(frozen=True)
class Identity:
    machine_id: str
    hostname: str
    public_ip: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.machine_id[:8]


def parse_metadata(text: str) -> dict[str, str]:
    """``k=v,k=v`` (fleet's ``metadata=`` option) → dict; empty text → {}."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise IdentityError(f"metadata item {item!r} is not key=value "
                                "(example: --metadata region=eu,disk=ssd)")
        if not _META_KEY.match(key):
            raise IdentityError(f"metadata key {key!r} may only contain letters, digits, "
                                "'_', '.' and '-'")
        out[key] = value
    return out


def _read_id(path: Path) -> str | None:
    try:
        text = path.read_text().strip().lower()
    except OSError:
        return None
    return text if _ID.match(text) else None


def machine_id(state_dir: Path, override: str | None = None,
               system_file: Path = Path("/etc/machine-id")) -> str:
    """The machine id, by the order in the module docstring (stored on first use)."""
    if override:
        mid = override.strip().lower()
        if not _ID.match(mid):
            raise IdentityError(f"--machine-id {override!r} must be 32 hexadecimal characters "
                                "(like /etc/machine-id; try: python3 -c 'import uuid; "
                                "print(uuid.uuid4().hex)')")
        return mid
    stored = state_dir / "machine-id"
    found = _read_id(stored)
    if found:
        return found
    mid = _read_id(system_file) or secrets.token_hex(16)
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = stored.with_suffix(".tmp")
    tmp.write_text(mid + "\n")
    os.replace(tmp, stored)
    return mid


def default_public_ip() -> str:
    """The address other machines would reach us at: the source address of the
    default route (no packet is sent), else the hostname's address, else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            ip = str(s.getsockname()[0])
            if ip and not ip.startswith("0."):
                return ip
        except OSError:
            pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def resolve(state_dir: Path, *, machine_id_override: str | None = None,
            hostname: str | None = None, public_ip: str | None = None,
            metadata: str | Mapping[str, str] = "") -> Identity:
    meta = parse_metadata(metadata) if isinstance(metadata, str) else dict(metadata)
    if public_ip:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in public_ip else socket.AF_INET, public_ip)
        except OSError:
            raise IdentityError(f"--public-ip {public_ip!r} is not an IP address") from None
    return Identity(machine_id(state_dir, machine_id_override),
                    hostname or socket.gethostname(),
                    public_ip or default_public_ip(), meta)
