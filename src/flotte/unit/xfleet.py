"""``[X-Fleet]``: where a unit may run (spec: fleet.md §2.4, §2.5, §3.2).

Parsing follows fleet exactly so that existing units schedule the same way:

* a value that both starts and ends with ``"`` is several quoted values
  separated by spaces (``MachineMetadata="region=us" "disk=ssd"``);
  otherwise the whole line is one value; repeated keys append;
* ``Conflicts=`` values are additionally split at whitespace (globs);
* only the name specifiers ``%n %N %p %i`` are substituted (by fleet, not
  systemd), so ``%H`` stays literal here;
* legacy names (``X-ConditionMachineOf=`` …) are accepted.

Where fleet was silent about a mistake we say so, as a warning: an unknown
key (the seed's ``ConditionMachineOf=``), a ``MachineMetadata=`` value that
is not ``key=value`` (fleet silently ignored it).  fleet's mutual-exclusion
rules are errors, as fleet's API answered them with 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flotte.unit import gopath
from flotte.unit import names as N
from flotte.unit.errors import Diagnostic, Severity
from flotte.unit.parser import Option

SECTION = "X-Fleet"

#: key → canonical key
KEYS: dict[str, str] = {
    "MachineID": "MachineID",
    "MachineOf": "MachineOf",
    "MachineMetadata": "MachineMetadata",
    "Conflicts": "Conflicts",
    "Global": "Global",
    "Replaces": "Replaces",
    # Deprecated in fleet v0.8.0, still honoured.
    "X-ConditionMachineID": "MachineID",
    "X-ConditionMachineBootID": "MachineBootID",
    "X-ConditionMachineOf": "MachineOf",
    "X-ConditionMachineMetadata": "MachineMetadata",
    "X-Conflicts": "Conflicts",
}
_TRUE = frozenset({"true", "yes", "1", "on", "t"})


@dataclass(slots=True)
class XFleet:
    """The parsed scheduling requirements of one unit."""

    machine_id: str | None = None
    machine_boot_id: str | None = None
    machine_of: list[str] = field(default_factory=list)
    metadata: dict[str, list[str]] = field(default_factory=dict)  # key → OR-ed values
    conflicts: list[str] = field(default_factory=list)  # globs
    replaces: list[str] = field(default_factory=list)  # globs
    global_: bool = False

    @property
    def empty(self) -> bool:
        return not (self.machine_id or self.machine_boot_id or self.machine_of or self.metadata
                    or self.conflicts or self.replaces or self.global_)

    def as_dict(self) -> dict[str, object]:
        return {
            "machine_id": self.machine_id,
            "machine_boot_id": self.machine_boot_id,
            "machine_of": list(self.machine_of),
            "machine_metadata": {k: list(v) for k, v in self.metadata.items()},
            "conflicts": list(self.conflicts),
            "replaces": list(self.replaces),
            "global": self.global_,
        }

    def conflicts_with(self, other_name: str) -> bool:
        """Does one of this unit's Conflicts globs match ``other_name``? (Go path.Match)"""
        return any(_go_match(g, other_name) for g in self.conflicts)


def _go_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match`` as fleet used it: a malformed pattern matches nothing."""
    try:
        return gopath.match(pattern, name)
    except gopath.BadPatternError:
        return False


def split_multivalue(value: str) -> list[str]:
    """fleet's ``parseMultivalueLine``, applied only to values wrapped in quotes."""
    if not (len(value) >= 2 and value.startswith('"') and value.endswith('"')):
        return [value]
    values: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
            continue
        if ch == " " and not quoted:
            values.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    values.append("".join(cur))
    return values


def fleet_specifiers(value: str, unit_name: str) -> str:
    """fleet's own substitution in [X-Fleet]: %n, %N, %p, %i (no unescaping)."""
    if "%" not in value:
        return value
    stem = unit_name.rsplit(".", 1)[0] if "." in unit_name else unit_name
    prefix, at, rest = stem.partition("@")
    instance = rest if at else ""
    return (value.replace("%n", unit_name).replace("%N", stem).replace("%p", prefix)
            .replace("%i", instance))


def parse_x_fleet(options: list[Option], unit_name: str, *, path: str | None = None
                  ) -> tuple[XFleet, list[Diagnostic]]:
    xf = XFleet()
    diags: list[Diagnostic] = []
    lines: dict[str, int] = {}
    is_template = N.is_valid(unit_name, N.NameFlags.TEMPLATE)

    def warn(msg: str, line: int | None, fix: str | None = None) -> None:
        diags.append(Diagnostic(Severity.WARNING, msg, line, fix, path))

    def error(msg: str, line: int | None, fix: str | None = None) -> None:
        diags.append(Diagnostic(Severity.ERROR, msg, line, fix, path))

    for opt in options:
        if opt.section != SECTION:
            continue
        canon = KEYS.get(opt.key)
        if canon is None:
            fix = None
            for known in ("MachineOf", "MachineID", "MachineMetadata", "Conflicts"):
                if opt.key.endswith(known):
                    fix = f"write {known}= (or the legacy X-Condition{known}=)"
                    break
            warn(f"unrecognized requirement in [X-Fleet] section: {opt.key}; it is ignored",
                 opt.line, fix or "known keys: " + ", ".join(k for k in KEYS
                                                             if not k.startswith("X-")))
            continue
        lines.setdefault(canon, opt.line)
        vals = [fleet_specifiers(v, unit_name) for v in split_multivalue(opt.value)]
        if canon == "MachineID":
            if xf.machine_id is None and vals and vals[0]:
                xf.machine_id = vals[0]
        elif canon == "MachineBootID":
            if xf.machine_boot_id is None and vals and vals[0]:
                xf.machine_boot_id = vals[0]
                warn("X-ConditionMachineBootID= is treated as a machine ID requirement "
                     "(as fleet did); the unit will rarely be schedulable", opt.line,
                     "use MachineID= or MachineMetadata=")
        elif canon == "MachineOf":
            for v in vals:
                if not v:
                    continue
                # a template's own MachineOf=apache@%i.service names a template: only
                # its instances are scheduled, and there %i has a value
                if not N.is_valid(v, N.NameFlags.PLAIN | N.NameFlags.INSTANCE) and not (
                        is_template and N.is_valid(v, N.NameFlags.TEMPLATE)):
                    warn(f"MachineOf= names an invalid unit '{v}'; the unit can never be "
                         "scheduled", opt.line, "name a unit exactly, without globs")
                xf.machine_of.append(v)
        elif canon == "MachineMetadata":
            for v in vals:
                k, eq, val = v.partition("=")
                if not eq or not k or not val or "=" in val:
                    warn(f"MachineMetadata value '{v}' is not key=value; fleet ignores it",
                         opt.line, 'write MachineMetadata=key=value (quote several: '
                         '"region=us-east" "disk=ssd")')
                    continue
                bucket = xf.metadata.setdefault(k, [])
                if val not in bucket:
                    bucket.append(val)
        elif canon == "Conflicts":
            for v in vals:
                xf.conflicts.extend(v.split())
        elif canon == "Replaces":
            for v in vals:
                xf.replaces.extend(v.split())
        elif canon == "Global":
            xf.global_ = bool(vals) and vals[-1].lower() in _TRUE

    def line_of(*keys: str) -> int | None:
        found = [lines[k] for k in keys if k in lines]
        return max(found) if found else None

    def exclusive(a: str, b: str, label_b: str | None = None) -> None:
        error(f"{a} cannot be used with {label_b or b}", line_of(a, b),
              f"remove one of {a}= and {b}=")

    has_id = xf.machine_id is not None or xf.machine_boot_id is not None
    id_key = "MachineID" if "MachineID" in lines else "MachineBootID"
    if has_id and xf.machine_of:
        exclusive(id_key, "MachineOf", "Peers")
    if has_id and xf.conflicts:
        exclusive(id_key, "Conflicts")
    if has_id and xf.global_:
        exclusive(id_key, "Global")
    if has_id and xf.replaces:
        exclusive(id_key, "Replaces")
    if xf.global_ and xf.machine_of:
        exclusive("Global", "MachineOf", "Peers")
    if xf.global_ and xf.replaces:
        exclusive("Global", "Replaces")
    if xf.conflicts and xf.replaces:
        exclusive("Conflicts", "Replaces")
    for peer in xf.machine_of:
        if any(_go_match(g, peer) for g in (*xf.conflicts, *xf.replaces)):
            error(f"unresolvable requirements: MachineOf={peer} matches this unit's own "
                  "Conflicts/Replaces", line_of("MachineOf"),
                  "a unit cannot both follow and avoid the same unit")
    return xf, diags
