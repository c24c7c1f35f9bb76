"""``Exec*=`` command lines: parse-time splitting and run-time ``$VAR`` expansion.

There is no shell.  systemd splits the value with its word extractor,
strips the prefixes ``- @ : + ! !!`` from the first word, expands specifiers
per word *after* unquoting (so a specifier whose value has spaces stays one
argument), and keeps ``$VAR``/``${VAR}`` for run time.  Errors are fatal for
the unit unless the command has the ``-`` prefix, in which case only that
line is dropped (spec: systemd.md §4.3–§4.4, §8 rules 8–9).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from flotte.unit.errors import ValueParseError
from flotte.unit.names import simplify_path
from flotte.unit.parser import string_is_safe
from flotte.unit.specifiers import errno_text
from flotte.unit.words import (
    WHITESPACE,
    Flags,
    WordError,
    extract_first_word_and_warn,
    split_words,
)

_EXEC_FLAGS = Flags.UNQUOTE | Flags.CUNESCAPE

#: Prefix flag names as they appear in ``flotte verify --json``.
IGNORE_FAILURE = "ignore-failure"  # -
SEPARATE_ARGV0 = "separate-argv0"  # @
NO_ENV_EXPAND = "no-env-expand"  # :
FULLY_PRIVILEGED = "fully-privileged"  # +
NO_SETUID = "no-setuid"  # !
AMBIENT_MAGIC = "ambient-magic"  # !!


@dataclass(frozen=True, slots=True)
class ExecCommand:
    """One command: ``path`` is what is executed, ``argv[0]`` what it is told."""

    path: str
    argv: list[str]
    ignore_failure: bool = False
    flags: frozenset[str] = field(default_factory=frozenset)

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "argv": list(self.argv),
            "ignore_failure": self.ignore_failure,
            "flags": sorted(self.flags),
        }


@dataclass(slots=True)
class ExecParse:
    """Outcome of one ``Exec*=`` assignment.

    ``commands`` to append; ``fatal`` set when the unit must not load
    (``bad-setting``); ``warnings`` for things systemd logs and moves past;
    ``dropped`` when a ``-`` line was discarded.
    """

    commands: list[ExecCommand] = field(default_factory=list)
    warnings: list[ValueParseError] = field(default_factory=list)
    fatal: ValueParseError | None = None
    dropped: bool = False


_PLAIN_COMMAND = re.compile(r"[^'\"\\;%]*\Z")


def _path_is_valid(path: str) -> bool:
    if path.startswith("/"):
        if len(path) < 256:
            return True
        if len(path) >= 4096:
            return False
        return all(len(c.encode()) <= 255 for c in path.split("/"))
    return path not in ("", ".", "..") and "/" not in path and len(path.encode()) <= 255


Expander = Callable[[str], str]


def parse_exec(value: str, expand: Expander | None = None) -> ExecParse:
    """Parse one ``Exec*=`` value (already stripped) into commands.

    ``expand`` expands specifiers in one word and raises
    :class:`~flotte.unit.errors.ValueParseError` for an unknown one.  An
    empty value is a reset and must be handled by the caller.
    """
    res = ExecParse()
    if _PLAIN_COMMAND.match(value) and value[:1] not in "-@:+!":
        # Fast path (most lines): no quotes, escapes, separators or specifiers.
        words = value.split()
        path = words[0]
        if path.endswith("/") or not _path_is_valid(path) or not string_is_safe(path):
            return parse_exec_slow(value, expand)
        res.commands.append(ExecCommand(simplify_path(path), words))
        return res
    return parse_exec_slow(value, expand)


def parse_exec_slow(value: str, expand: Expander | None = None) -> ExecParse:
    """The general case of :func:`parse_exec`, step by step as systemd does it."""
    res = ExecParse()
    text = value
    pos = 0
    n = len(text)
    while True:
        semicolon = False
        try:
            first, pos, relaxed = extract_first_word_and_warn(text, pos, _EXEC_FLAGS)
        except WordError:
            # systemd returns 0 here: the rest of the line is silently dropped
            # after logging the quoting problem.
            res.warnings.append(ValueParseError(f'Unbalanced quoting, ignoring: "{value}"',
                                                "close the quote"))
            return res
        if first is None:
            return res
        if relaxed:
            res.warnings.append(ValueParseError(
                f'Ignoring unknown escape sequences: "{first}"',
                "write \\\\ for a literal backslash"))
        if first == ";":
            continue
        flags: set[str] = set()
        separate_argv0 = False
        i = 0
        while i < len(first):
            c = first[i]
            if c == "-" and IGNORE_FAILURE not in flags:
                flags.add(IGNORE_FAILURE)
            elif c == "@" and not separate_argv0:
                separate_argv0 = True
            elif c == ":" and NO_ENV_EXPAND not in flags:
                flags.add(NO_ENV_EXPAND)
            elif c == "+" and not flags & {FULLY_PRIVILEGED, NO_SETUID, AMBIENT_MAGIC}:
                flags.add(FULLY_PRIVILEGED)
            elif c == "!" and not flags & {FULLY_PRIVILEGED, NO_SETUID, AMBIENT_MAGIC}:
                flags.add(NO_SETUID)
            elif c == "!" and not flags & {FULLY_PRIVILEGED, AMBIENT_MAGIC}:
                flags.discard(NO_SETUID)
                flags.add(AMBIENT_MAGIC)
            else:
                break
            i += 1
        if separate_argv0:
            flags.add(SEPARATE_ARGV0)
        ignore = IGNORE_FAILURE in flags
        f = first[i:]

        def fail(message: str, fix: str | None = None, *, _ignore: bool = ignore) -> ExecParse:
            err = ValueParseError(message + (", ignoring" if _ignore and "ignoring" not in message
                                             else ""), fix)
            if _ignore:
                res.warnings.append(err)
                res.dropped = True
            else:
                res.fatal = err
            return res

        path = f
        if expand is not None and "%" in f:
            try:
                path = expand(f)
            except ValueParseError as exc:
                sfx = ", ignoring" if ignore else ""
                return fail(f"Failed to resolve unit specifiers in '{f}'{sfx}: {errno_text(exc)}",
                            exc.fix)
        if not path:
            sfx = ", ignoring" if ignore else ""
            return fail(f"Empty path in command line{sfx}: '{value}'",
                        "put the program's path after the prefixes")
        if not string_is_safe(path):
            sfx = ", ignoring" if ignore else ""
            return fail(f"Executable name contains special characters{sfx}: {path}",
                        "executable paths may not contain quotes, backslashes or control "
                        "characters")
        if path.endswith("/"):
            sfx = ", ignoring" if ignore else ""
            return fail(f"Executable path specifies a directory{sfx}: {path}",
                        "name the program, not its directory")
        if not _path_is_valid(path):
            sfx = ", ignoring" if ignore else ""
            return fail(f"Neither a valid executable name nor an absolute path{sfx}: {path}",
                        "use an absolute path such as /usr/bin/program or a bare program name")
        argv: list[str] = []
        if not separate_argv0:
            argv.append(path)
        exe = simplify_path(path)
        while pos < n:
            c = text[pos]
            nxt = text[pos + 1] if pos + 1 < n else ""
            if c == ";" and (not nxt or nxt in WHITESPACE):
                pos += 1
                while pos < n and text[pos] in WHITESPACE:
                    pos += 1
                semicolon = True
                break
            if c == "\\" and nxt == ";":
                after = text[pos + 2] if pos + 2 < n else ""
                if not after or after in WHITESPACE:
                    pos += 2
                    while pos < n and text[pos] in WHITESPACE:
                        pos += 1
                    argv.append(";")
                    continue
            try:
                word, pos, relaxed = extract_first_word_and_warn(text, pos, _EXEC_FLAGS)
            except WordError:
                return fail(f'Unbalanced quoting, ignoring: "{value}"',
                            "close the quote or escape it as \\\" or \\'")
            if word is None:
                break
            if relaxed:
                res.warnings.append(ValueParseError(
                    f'Ignoring unknown escape sequences: "{word}"',
                    "write \\\\ for a literal backslash"))
            if expand is not None and "%" in word:
                try:
                    word = expand(word)
                except ValueParseError as exc:
                    sfx = ", ignoring" if ignore else ""
                    return fail(f"Failed to resolve unit specifiers in {word}{sfx}: "
                                f"{errno_text(exc)}",
                                exc.fix)
            argv.append(word)
        if not argv:
            sfx = ", ignoring" if ignore else ""
            return fail(f"Empty executable name or zeroeth argument{sfx}: {value}",
                        "with '@', give argv[0] after the path")
        res.commands.append(ExecCommand(exe, argv, ignore, frozenset(flags)))
        if not semicolon:
            return res


# --------------------------------------------------------------------------
# Run time: $VAR and ${VAR}

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _valid_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))


@dataclass(slots=True)
class Expansion:
    argv: list[str]
    unset: set[str] = field(default_factory=set)
    bad: set[str] = field(default_factory=set)


def replace_env(word: str, env: Mapping[str, str], out: Expansion) -> str:
    """systemd's ``replace_env`` (flags 0): ``${NAME}`` anywhere, ``$$`` → ``$``.

    A state machine, as upstream: shell operators such as ``${X:-y}`` are not
    supported — at the ``:`` it falls back to plain text and goes on
    scanning, so only inner ``${…}`` references are substituted.
    """
    if "$" not in word:
        return word
    WORD, CURLY, VARIABLE = 0, 1, 2
    state = WORD
    parts: list[str] = []
    start = 0  # beginning of the not-yet-emitted chunk
    for i, c in enumerate(word):
        if state == WORD:
            if c == "$":
                state = CURLY
        elif state == CURLY:
            if c == "{":
                parts.append(word[start : i - 1])
                start = i - 1
                state = VARIABLE
            elif c == "$":
                parts.append(word[start:i])
                start = i + 1
                state = WORD
            else:
                state = WORD
        else:  # VARIABLE
            if c == "}":
                name = word[start + 2 : i]
                value = env.get(name)
                if value is None:
                    (out.unset if _valid_name(name) else out.bad).add(name)
                elif not _valid_name(name):
                    out.bad.add(name)
                else:
                    parts.append(value)
                start = i + 1
                state = WORD
            elif c == ":":
                state = WORD
    parts.append(word[start:])
    return "".join(parts)


def expand_argv(argv: list[str], env: Mapping[str, str]) -> Expansion:
    """systemd's ``replace_env_argv``: run-time variable expansion of an argv.

    ``$NAME`` as a whole word becomes the value split at whitespace (quotes
    honoured, zero or more words; unset gives no word at all); ``${NAME}``
    anywhere is replaced verbatim; ``$$`` is ``$``.
    """
    out = Expansion([])
    for word in argv:
        if word[:1] == "$" and word[1:2] not in ("{", "$"):
            name = word[1:]
            value = env.get(name)
            if value is None:
                (out.unset if _valid_name(name) else out.bad).add(name)
                continue
            out.argv.extend(split_words(value, Flags.UNQUOTE | Flags.RELAX))
            continue
        out.argv.append(replace_env(word, env, out))
    return out
