"""Deterministic corpus of unit files for the differential test against systemd.

Two parts:

* hand-written probes, one small ``.service`` per rule of ``systemd.md`` §1, §4.4, §5 and
  §8 (continuations, comments, CRLF, case sensitivity, X- keys, booleans, time spans, Exec
  splitting and prefixes, Environment quoting, Limit*, specifiers, templates/instances, …);
* fuzzed probes: valid seed units with 1–5 random mutations each (fixed seed), covering
  inserted/deleted characters, duplicated/dropped/swapped lines, broken section headers,
  stray backslashes/quotes/``%``, random whitespace, CRLF, random key case.

Every file is valid UTF-8 without NUL bytes, and only name-derived specifiers
(``%n %N %p %P %i %I %j %J %f %%``) or specifiers that systemd 252 does not know
(``%z`` …) appear: the others (``%u``, ``%h``, ``%H``, …) depend on the host and on the
oracle being a *user* manager.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

SEED = 0x5EED_F1EE
FUZZ_COUNT = 200

# name-derived specifiers (same for the oracle and for flotte) and letters systemd 252 does
# not know (checked against 252: "Failed to resolve unit specifiers …: Invalid slot").
NAME_SPECIFIERS = "nNpPiIjJf"
UNKNOWN_SPECIFIERS = "zkxDFKOQXZe"


@dataclass(frozen=True)
class Probe:
    name: str  # unit name systemd and flotte load
    file: str  # file the unit text is written to (the template for instances)
    text: str
    kind: str  # "hand" or "fuzz"
    note: str = ""

    @property
    def is_instance(self) -> bool:
        return self.name != self.file


# ---------------------------------------------------------------------------
# hand-written probes

_SIMPLE = "[Service]\nExecStart=/bin/true\n"


def _svc(body: str, unit: str = "") -> str:
    """A unit with optional [Unit] lines and [Service] lines (each ends with newline)."""
    text = ""
    if unit:
        text += "[Unit]\n" + unit
    return text + "[Service]\n" + body


def _hand() -> list[tuple[str, str, str]]:
    """(name, text, note) triples; names get the ``h-`` prefix and ``.service`` added."""
    p: list[tuple[str, str, str]] = []

    def add(name: str, text: str, note: str = "") -> None:
        p.append((name, text, note))

    # --- §1.1 lines, comments, sections, assignments --------------------------------
    add("syn-basic", "[Unit]\nDescription=basic probe\n" + _SIMPLE)
    add(
        "syn-crlf",
        "[Unit]\r\nDescription=crlf file\r\nWants=a1.target\r\n[Service]\r\n"
        "ExecStart=/bin/echo crlf\r\nEnvironment=A=1\r\nTimeoutStopSec=7\r\n",
        "CRLF",
    )
    add(
        "syn-crlf-cont",
        "[Unit]\r\nDescription=crlf \\\r\n continued\r\n[Service]\r\n"
        "ExecStart=/bin/echo a \\\r\n  b\r\n",
        "CRLF + continuation",
    )
    add(
        "syn-comments",
        "# leading comment\n; semicolon comment\n[Unit]\n  # indented\n"
        "\t; tab-indented\nDescription=a # b ; c\n[Service]\n#ExecStart=/bin/false\n"
        "ExecStart=/bin/echo # not a comment ; neither\n",
    )
    add(
        "syn-comments-oneshot",
        "[Unit]\nDescription=a # b ; c\n[Service]\nType=oneshot\n"
        "ExecStart=/bin/echo # not a comment ; neither\n",
    )
    add(
        "syn-ws-eq",
        "[Unit]\nDescription   =   spaced out   \n[Service]\n"
        "ExecStart\t=\t/bin/echo\ttabbed\t\nType =  oneshot\n   RemainAfterExit=yes   \n",
    )
    add("syn-interior-ws", "[Unit]\nDescription=a\t\tb   c\n" + _SIMPLE)
    add(
        "syn-multi-eq",
        "[Unit]\nDescription=a=b=c\n[Service]\nExecStart=/bin/echo x=y\nEnvironment=A=B=C\n",
    )
    add(
        "syn-missing-eq",
        "[Unit]\nDescription=missing eq\nthis line has no equals\n"
        "[Service]\nExecStart=/bin/true\nlonely\n",
    )
    add("syn-outside", "Description=outside\nFoo=bar\n[Unit]\nDescription=inside\n" + _SIMPLE)
    add("syn-bad-header1", "[Unit\nDescription=x\n" + _SIMPLE, "fatal header")
    add("syn-bad-header2", "[Unit] pants\nDescription=x\n" + _SIMPLE)
    add("syn-bad-header3", "[Unit]\nDescription=x\n[Service]]\nExecStart=/bin/true\n")
    add("syn-bad-header4", "[Unit]\nDescription=x\n" + _SIMPLE + "Unit]\n")
    add("syn-header-spaces", "[ Unit ]\nDescription=x\n" + _SIMPLE)
    add(
        "syn-header-ws",
        "  [Unit]  \nDescription=indented header\n\t[Service]\nExecStart=/bin/true\n",
    )
    add("syn-empty-section", "[]\nDescription=x\n" + _SIMPLE)
    add(
        "syn-reopen",
        "[Unit]\nDescription=first\n[Service]\nExecStart=/bin/true\n"
        "[Unit]\nWants=a1.target\n[Service]\nRestart=always\n[Unit]\nDescription=second\n",
    )
    add("syn-empty-key", "[Unit]\n=value\nDescription=x\n" + _SIMPLE)
    add("syn-key-space", "[Unit]\nDescri ption=x\n" + _SIMPLE)
    add("syn-unknown-section", "[Unit]\nDescription=x\n[Foo]\nBar=1\nBaz=2\n" + _SIMPLE)
    add(
        "syn-unknown-keys",
        "[Unit]\nDescription=x\nFrobnicate=1\n[Service]\n"
        "ExecStart=/bin/true\nWibble=2\nRestartSteps=3\n",
    )
    add(
        "syn-x-keys",
        "[Unit]\nDescription=x\nX-Foo=1\nX-Fleet=bar\n[Service]\n"
        "ExecStart=/bin/true\nX-Other=2\nx-lower=3\n",
    )
    add(
        "syn-x-section",
        "[Unit]\nDescription=x\n[X-Fleet]\nMachineOf=foo.service\n"
        "Conflicts=bar*\nanything=goes\n[X-Other]\nno-prefix-needed=1\n" + _SIMPLE,
    )
    add(
        "syn-install",
        "[Unit]\nDescription=x\n"
        + _SIMPLE
        + "[Install]\nWantedBy=multi-user.target\nAlias=h-alias.service\nAlso=a1.target\n",
    )
    add(
        "syn-long-line",
        "[Unit]\nDescription=" + "x" * 4000 + "\n[Service]\n"
        "ExecStart=/bin/echo " + "y" * 3000 + "\n",
    )
    add("syn-whitespace-only", "   \n\t\n\n", "not empty: no ExecStart")
    add("syn-comment-only", "# just a comment\n")
    add("syn-empty-file", "", "masked")
    add("syn-no-newline", "[Unit]\nDescription=no final newline\n[Service]\nExecStart=/bin/true")
    add(
        "syn-case-section",
        "[unit]\nDescription=lower section\n[service]\nExecStart=/bin/x\n"
        "[Service]\nExecStart=/bin/true\n",
    )
    add(
        "syn-case-key",
        "[Unit]\ndescription=lower\nDESCRIPTION=upper\nDescription=right\n"
        "[Service]\nexecstart=/bin/false\nExecStart=/bin/true\n",
    )
    add(
        "syn-unicode",
        "[Unit]\nDescription=héllo wörld ✓ 😀\n[Service]\n"
        "ExecStart=/bin/echo héllo 'wörld ✓' 😀\nEnvironment=GREETING=grüße\n",
    )
    add("syn-cr-mid", "[Unit]\nDescription=a\rb\n" + _SIMPLE)
    add("syn-semicolon-mid", "[Unit]\nDescription=x;y #z\nWants=a1.target ; b1.target\n" + _SIMPLE)
    # --- §1.2 continuations -----------------------------------------------------------
    add("cont-basic", "[Unit]\nDescription=a\\\n   b\\\n\tc\n" + _SIMPLE)
    add(
        "cont-trailing-space",
        "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/echo poof \\  \nEnvironment=A=1\n",
    )
    add("cont-comment", "[Unit]\nDescription=one \\\n# comment\\\n; other\\\n two\n" + _SIMPLE)
    add("cont-comment-indented", "[Unit]\nDescription=one \\\n   # comment\n two\n" + _SIMPLE)
    add("cont-empty-line", "[Unit]\nDescription=ends here\\\n\nWants=a1.target\n" + _SIMPLE)
    add("cont-blank-ws-line", "[Unit]\nDescription=ends here\\\n   \nWants=a1.target\n" + _SIMPLE)
    add("cont-comment-not-continued", "[Unit]\n#foo\\\nDescription=kept\n" + _SIMPLE)
    add("cont-eof", "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\nEnvironment=A=1 \\\n")
    add("cont-even-backslash", "[Unit]\nDescription=1\\\\\\\n\\\\2\n" + _SIMPLE)
    add("cont-double-backslash", "[Unit]\nDescription=a\\\\\nWants=a1.target\n" + _SIMPLE)
    add(
        "cont-into-header",
        "[Unit]\nDescription=swallow \\\n[Service]\nExecStart=/bin/true\n"
        "[Service]\nExecStart=/bin/true\n",
    )
    add(
        "cont-exec",
        "[Service]\nExecStart=/bin/echo one \\\n  two \\\n three\n"
        'ExecStartPost=/bin/echo \\\n   "quoted \\\n  across"\n',
    )
    add(
        "cont-warn-line",
        "[Unit]\nDescription=x\nUnknownKey=a \\\n b \\\n c\n"
        "[Service]\nExecStart=/bin/true\nRestart=bogus \\\n  value\n",
        "line numbers",
    )
    add("cont-key", "[Unit]\nDescrip\\\ntion=split key\n" + _SIMPLE)
    add(
        "cont-eof-warn",
        "[Service]\nExecStart=/bin/true\nBogus=1 \\\n  2 \\\n",
        "continuation at end of file: which line is reported",
    )
    # --- §1.3 / §1.6 quoting, repetition, resets ---------------------------------------
    add("quote-desc", "[Unit]\nDescription=\"quoted\" 'single' \\n kept\n" + _SIMPLE)
    add("rep-desc", "[Unit]\nDescription=first\nDescription=second\n" + _SIMPLE)
    add("rep-desc-reset", "[Unit]\nDescription=first\nDescription=\n" + _SIMPLE)
    add("rep-type", "[Service]\nType=oneshot\nType=simple\nExecStart=/bin/true\n")
    add(
        "rep-execpre",
        "[Service]\nExecStartPre=/bin/echo 1\nExecStartPre=/bin/echo 2\n"
        "ExecStartPre=\nExecStartPre=/bin/echo 3\nExecStart=/bin/true\n"
        "ExecStopPost=/bin/echo a\nExecStopPost=/bin/echo b\n",
    )
    add(
        "rep-execstart-reset",
        "[Service]\nExecStart=/bin/echo one\nExecStart=\nExecStart=/bin/echo two\n",
    )
    add(
        "rep-deps-noreset",
        "[Unit]\nWants=a1.target b1.target\nWants=c1.target\n"
        "After=a1.target\nAfter=\nAfter=c1.target\nBindTo=d1.target\n" + _SIMPLE,
    )
    # --- §1.4 booleans ---------------------------------------------------------------
    spellings = [
        "1",
        "yes",
        "y",
        "true",
        "t",
        "on",
        "0",
        "no",
        "n",
        "false",
        "f",
        "off",
        "True",
        "YeS",
        "ON",
        "oFf",
        "N",
        "maybe",
        "2",
        "",
        "yes please",
        " on ",
    ]
    for idx, word in enumerate(spellings):
        other = spellings[(idx + 7) % len(spellings)]
        add(
            f"bool-{idx:02d}",
            "[Service]\nType=oneshot\nExecStart=/bin/true\n"
            f"RemainAfterExit={word}\nSendSIGKILL={other}\n",
            f"{word!r}/{other!r}",
        )
    # --- §1.5 time spans ---------------------------------------------------------------
    times = [
        ("5min 20s", "5s500ms", "300ms20s 5day"),
        ("2.5", ".7", "5.5s 0.5ms"),
        (".50y", "+5", "-5"),
        ("5.", "3.s", "12..34"),
        ("infinity", "5s infinity", "1 h"),
        ("1hr", "2weeks", "3M"),
        ("1y", "10us", "10µs"),
        ("10μs", "garbage", ""),
        ("0", "1 min", "1m"),
        ("5 s", "5 S", "1Min"),
        ("90", "1h 30min", "100ms"),
        ("1.5min", "2d 3h 4m 5s", "1msec 1usec"),
        ("1seconds", "2minutes", "3hours"),
        ("4days", "1week", "2months"),
        ("1years", "1second", "0.000001"),
        ("infinity ", " 3", "1e3"),
        ("18446744073709551615us", "584942417355y", "1w 1M"),
        ("123456789", "1.23456789", "0.5"),
    ]
    for idx, (a, b, c) in enumerate(times):
        add(
            f"time-{idx:02d}",
            "[Service]\nExecStart=/bin/true\n"
            f"TimeoutStartSec={a}\nTimeoutStopSec={b}\nRestartSec={c}\nRuntimeMaxSec={a}\n",
            f"{a!r} {b!r} {c!r}",
        )
    add(
        "time-zero",
        "[Service]\nExecStart=/bin/true\nTimeoutStartSec=0\nTimeoutStopSec=0\n"
        "RestartSec=0\nRuntimeMaxSec=0\n",
    )
    add("time-timeoutsec-0", "[Service]\nExecStart=/bin/true\nTimeoutSec=0\n")
    add("time-timeoutsec", "[Service]\nExecStart=/bin/true\nTimeoutSec=42\n")
    add(
        "time-timeoutsec-order1",
        "[Service]\nExecStart=/bin/true\nTimeoutSec=42\nTimeoutStartSec=7\n",
    )
    add(
        "time-timeoutsec-order2",
        "[Service]\nExecStart=/bin/true\nTimeoutStopSec=7\nTimeoutSec=42\n",
    )
    add("time-oneshot-default", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
    add("time-oneshot-set", "[Service]\nType=oneshot\nExecStart=/bin/true\nTimeoutStartSec=5\n")
    add(
        "time-oneshot-runtimemax",
        "[Service]\nType=oneshot\nExecStart=/bin/true\nRuntimeMaxSec=5\n",
    )
    add(
        "time-reset",
        "[Service]\nExecStart=/bin/true\nTimeoutStopSec=5\nTimeoutStopSec=\n"
        "RestartSec=3\nRestartSec=\n",
    )
    # --- enums, signals, numbers ------------------------------------------------------
    for idx, t in enumerate(
        [
            "simple",
            "exec",
            "forking",
            "oneshot",
            "notify",
            "idle",
            "notify-reload",
            "Simple",
            "SIMPLE",
            "",
            "dbus",
        ]
    ):
        add(f"enum-type-{idx:02d}", f"[Service]\nType={t}\nExecStart=/bin/true\n", t)
    add(
        "enum-type-dbus-busname",
        "[Service]\nType=dbus\nBusName=org.example.Foo\nExecStart=/bin/true\n",
    )
    for idx, r in enumerate(
        [
            "no",
            "on-success",
            "on-failure",
            "on-abnormal",
            "on-watchdog",
            "on-abort",
            "always",
            "no-success",
            "Always",
            "",
            "on_failure",
        ]
    ):
        add(
            f"enum-restart-{idx:02d}",
            f"[Service]\nExecStart=/bin/true\nRestart=on-abort\nRestart={r}\n",
            r,
        )
    add(
        "enum-restart-oneshot-always",
        "[Service]\nType=oneshot\nExecStart=/bin/true\nRestart=always\n",
    )
    add(
        "enum-restart-oneshot-onsuccess",
        "[Service]\nType=oneshot\nExecStart=/bin/true\nRestart=on-success\n",
    )
    add(
        "enum-restart-oneshot-onfailure",
        "[Service]\nType=oneshot\nExecStart=/bin/true\nRestart=on-failure\n",
    )
    add(
        "enum-restart-oneshot-late-type",
        "[Service]\nRestart=always\nExecStart=/bin/true\nType=oneshot\n",
    )
    for idx, k in enumerate(["control-group", "mixed", "process", "none", "Mixed", "all"]):
        add(f"enum-killmode-{idx:02d}", f"[Service]\nExecStart=/bin/true\nKillMode={k}\n", k)
    sigs = [
        ("SIGINT", "3"),
        ("INT", "SIGKILL"),
        ("2", "SIGQUIT"),
        ("SIGRTMIN+1", "9"),
        ("garbage", "SIGFOO"),
        ("0", "65"),
        ("sigterm", "SIGHUP"),
        ("SIGUSR1", ""),
    ]
    for idx, (k, f) in enumerate(sigs):
        add(
            f"signal-{idx:02d}",
            f"[Service]\nExecStart=/bin/true\nKillSignal={k}\nFinalKillSignal={f}\n",
            f"{k}/{f}",
        )
    umasks = ["0077", "077", "77", "0", "0777", "01777", "8", "abc", "", "0o22", " 0027 "]
    for idx, m in enumerate(umasks):
        add(f"umask-{idx:02d}", f"[Service]\nExecStart=/bin/true\nUMask={m}\n", m)
    nices = ["5", "-20", "19", "20", "-21", "+3", "abc", "", "0", " 7 "]
    for idx, m in enumerate(nices):
        add(f"nice-{idx:02d}", f"[Service]\nExecStart=/bin/true\nNice={m}\n", m)
    add("nice-reset", "[Service]\nExecStart=/bin/true\nNice=5\nNice=\n")
    # --- Limit* ------------------------------------------------------------------------
    limits = [
        ("NOFILE", "100"),
        ("NOFILE", "100:200"),
        ("NOFILE", "infinity"),
        ("NOFILE", "10:infinity"),
        ("NOFILE", "infinity:10"),
        ("NOFILE", "200:100"),
        ("NOFILE", "10:20:30"),
        ("NOFILE", "66:wat"),
        ("NOFILE", "1K"),
        ("NOFILE", "  100 : 200 "),
        ("NOFILE", "-1"),
        ("NOFILE", ""),
        ("NPROC", "50"),
        ("NPROC", "10:20"),
        ("NPROC", "infinity"),
        ("CPU", "1234ms"),
        ("CPU", "1h"),
        ("CPU", "infinity"),
        ("CPU", "30"),
        ("CPU", "1:2"),
        ("AS", "1G"),
        ("FSIZE", "1T"),
        ("DATA", "4M:8M"),
        ("STACK", "8M"),
        ("CORE", "0"),
        ("CORE", "infinity"),
        ("RSS", "512K"),
        ("MEMLOCK", "64K"),
        ("LOCKS", "100"),
        ("SIGPENDING", "1000"),
        ("MSGQUEUE", "819200"),
        ("NICE", "-5"),
        ("NICE", "+5"),
        ("NICE", "0"),
        ("NICE", "40"),
        ("NICE", "41"),
        ("NICE", "-21"),
        ("RTPRIO", "99"),
        ("RTTIME", "59s"),
        ("RTTIME", "1000"),
        ("RTTIME", "infinity"),
        ("NOFILE", "garbage"),
        ("AS", "1.5G"),
        ("FSIZE", "1E"),
    ]
    for idx, (lim, val) in enumerate(limits):
        add(
            f"limit-{idx:02d}",
            f"[Service]\nExecStart=/bin/true\nLimit{lim}={val}\n",
            f"Limit{lim}={val}",
        )
    add(
        "limit-override",
        "[Service]\nExecStart=/bin/true\nLimitNOFILE=100\nLimitNOFILE=200:300\nLimitNOFILE=bad\n",
    )
    # --- WorkingDirectory --------------------------------------------------------------
    for idx, w in enumerate(
        [
            "/srv/data",
            "-/nonexistent",
            "~",
            "relative/dir",
            "",
            "/srv//x/../y/",
            "-~",
            "/srv/%n",
            "/srv/%z",
        ]
    ):
        add(f"workdir-{idx:02d}", f"[Service]\nExecStart=/bin/true\nWorkingDirectory={w}\n", w)
    # --- Environment / EnvironmentFile (§5) --------------------------------------------
    envs = [
        "ONE='one' \"TWO='two two' too\" THREE=",
        '"VAR1=word1 word2" VAR2=word3 "VAR3=$word 5 6"',
        "MID=a'b c'd",
        "A=1 B=2 A=3",
        "1X=2 C =x A-B=1 A.B=1 _U=ok",
        "NL=a\\nb TAB=a\\tb HEX=\\x41 OCT=\\101 UNI=\\u00e9 SP=a\\sb",
        '"UNBALANCED=1',
        "Q='unbalanced",
        "DOLLAR=$HOME BR=${HOME} DD=$$",
        "N=%n P=%p I=%i",
        "Z=%z",
        "EMPTY= ALSO=",
        "BS=a\\\\b WEIRD=a\\wb",
        "A=\"quoted\"tail 'B=single'",
        "ä=1 Ü=2",
        "",
        "   ",
        "K=v#hash L=v;semi",
    ]
    for idx, e in enumerate(envs):
        add(f"env-{idx:02d}", f"[Service]\nExecStart=/bin/true\nEnvironment={e}\n", e)
    add(
        "env-reset",
        "[Service]\nExecStart=/bin/true\nEnvironment=A=1 B=2\nEnvironment=\nEnvironment=C=3\n",
    )
    add(
        "env-dup-order",
        "[Service]\nExecStart=/bin/true\nEnvironment=A=1 B=2\n"
        "Environment=C=3\nEnvironment=A=4\nEnvironment=B=\n",
    )
    add(
        "envfile-forms",
        "[Service]\nExecStart=/bin/true\nEnvironmentFile=/etc/a.env\n"
        "EnvironmentFile=-/etc/b.env\nEnvironmentFile=/etc/*.env\n"
        "EnvironmentFile=-/etc/%n.env\n",
    )
    add(
        "envfile-relative",
        "[Service]\nExecStart=/bin/true\nEnvironmentFile=relative.env\n"
        "EnvironmentFile=-also-relative\nEnvironmentFile=/ok.env\n",
    )
    add(
        "envfile-reset",
        "[Service]\nExecStart=/bin/true\nEnvironmentFile=/etc/a.env\n"
        "EnvironmentFile=\nEnvironmentFile=/etc/c.env\n",
    )
    add(
        "envfile-odd",
        "[Service]\nExecStart=/bin/true\nEnvironmentFile=- /etc/space.env\n"
        "EnvironmentFile=--/etc/dd.env\nEnvironmentFile=/etc/%z.env\n"
        'EnvironmentFile="/etc/quoted.env"\nEnvironmentFile=/etc/two words.env\n',
    )
    # --- Exec* splitting (§4.3, §4.4) ---------------------------------------------------
    execs = [
        "/bin/echo \"a b\" 'c d' e\\ f",
        "/bin/echo yay'foo'bar \"a\"b'c' ''",
        "/bin/echo \\n \\t \\x41 \\101 \\u00e9 \\U0001F600 \\s \\a \\\\ \\\" \\'",
        "/bin/echo '\\n' '\\x41' \"\\t\"",
        "/bin/echo \\w \\z fooo\\ bar \\q",
        "/bin/echo $FOO ${FOO} $$ $FOO$BAR ${X:-y} $",
        "/bin/echo a ; /bin/echo b",
        "/bin/echo a \\; b ';' \";\" \\073 one; ;;",
        "/bin/echo a ; ; /bin/echo b ;",
        "-/bin/false",
        "@/bin/echo argv0 arg1",
        "-@/bin/echo argv0",
        "@-/bin/echo argv0",
        ":/bin/echo $NOEXPAND",
        "+/bin/echo plus",
        "!/bin/echo bang",
        "!!/bin/echo bangbang",
        "-:+@/bin/echo all argv0b",
        "+!/bin/echo both",
        "--/bin/echo twice",
        "- /bin/echo spaced",
        "@/bin/echo",
        "true",
        "bin/true",
        "/bin///true",
        "/bin/",
        '"/bin/echo" quoted path',
        "'/bin/echo' single",
        "/bin/echo\\a",
        '""',
        '/bin/echo "unbalanced',
        '-/bin/echo "unbalanced',
        "/bin/echo 'unbalanced",
        "-/bin/echo 'unbalanced",
        "/bin/echo trailing\\  ",
        "-/bin/echo trailing\\  ",
        "/bin/echo trailing\\",
        "/bin/echo %n %N %p %P %i %I %j %J %f %%",
        "/bin/echo %z",
        "-/bin/echo %z",
        "/bin/echo 100% %, %%z a%",
        "/bin/echo \"%n with space\" '%p'",
        "/bin/echo tab\there",
        "/bin/echo \\\"dq\\\" \\'sq\\'",
        "/bin/echo \"a\\\"b\" 'a\\'b'",
        "/bin/echo a\"b c\"d e'f g'h",
        "/bin/echo \\x00 \\u0000 \\x7f \\xff",
        "/bin/echo * ? [x] (y) <z> | & ! # ~ `",
        "-",
        "@",
        "/bin/echo \\;",
        ";",
        "/bin/echo ;",
        "/bin/%n",
        "/bin/echo %",
    ]
    for idx, e in enumerate(execs):
        add(f"exec-{idx:02d}", f"[Service]\nType=oneshot\nExecStart={e}\n", e)
    add(
        "exec-all-kinds",
        "[Service]\nExecCondition=/bin/true cond\n"
        "ExecStartPre=-/bin/echo pre\nExecStart=/bin/echo start\nExecStartPost=/bin/echo post\n"
        "ExecReload=/bin/kill -HUP $MAINPID\nExecStop=/bin/echo stop\n"
        "ExecStopPost=/bin/echo stoppost\n",
    )
    add(
        "exec-two-simple",
        "[Service]\nExecStart=/bin/true\nExecStart=/bin/false\n",
        "two ExecStart on simple",
    )
    add("exec-two-forking", "[Service]\nType=forking\nExecStart=/bin/true\nExecStart=/bin/false\n")
    add("exec-two-oneshot", "[Service]\nType=oneshot\nExecStart=/bin/true\nExecStart=/bin/false\n")
    add(
        "exec-semicolon-simple",
        "[Service]\nExecStart=/bin/true ; /bin/false\n",
        "two commands via ';' on simple",
    )
    add("exec-none", "[Unit]\nDescription=no exec\n[Service]\nType=simple\n")
    add("exec-only-stop", "[Service]\nType=oneshot\nExecStop=/bin/true\n")
    add("exec-only-stop-rae", "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStop=/bin/true\n")
    add(
        "exec-fatal-then-more",
        "[Unit]\nDescription=before\n[Service]\n"
        'ExecStart=/bin/echo "x\nBogusKey=1\n[Unit]\nDescription=after\nWants=a1.target\n',
        "systemd stops reading at the fatal line",
    )
    add(
        "exec-fatal-then-header",
        "[Unit]\nDescription=before\n[Service]\nExecStart=/bin/echo %z\n[Unit\nDescription=after\n",
    )
    add(
        "exec-ignored-then-more",
        "[Unit]\nDescription=before\n[Service]\n"
        'ExecStartPre=-/bin/echo "x\nExecStart=/bin/true\nBogusKey=1\n',
    )
    add(
        "exec-empty-value",
        "[Service]\nExecStart=/bin/true\nExecStartPost=\nExecStartPost=   \nExecStop=\n",
    )
    # --- dependencies ------------------------------------------------------------------
    add(
        "dep-all",
        "[Unit]\nWants=w1.target w2.target\nRequires=r1.target\n"
        "Requisite=q1.target\nBindsTo=b1.target\nPartOf=p1.target\nConflicts=c1.target\n"
        "Before=bf1.target\nAfter=af1.target af2.target\n" + _SIMPLE,
    )
    add("dep-legacy-bindto", "[Unit]\nBindTo=b2.target\nBindsTo=b3.target\n" + _SIMPLE)
    add(
        "dep-invalid-names",
        "[Unit]\nWants=nosuffix\nWants=good.target bad/name.target\n"
        "Requires=foo@.service\nAfter=a,b.target\nBefore=ok.target\n" + _SIMPLE,
    )
    add(
        "dep-specifiers",
        "[Unit]\nWants=%p-extra.target\nAfter=%n.target\n"
        "Requires=%z.target\nBefore=x%%y.target\n" + _SIMPLE,
    )
    add(
        "dep-quoted",
        '[Unit]\nWants="q1.target" \'q2.target\'\nAfter="q3.target q4.target"\n' + _SIMPLE,
    )
    add(
        "dep-specifiers-restricted",
        "[Unit]\nWants=%P.target\nWants=%I.target\nAfter=%J.target %f.target\n"
        "Before=%N.target %j.target %i.target\n" + _SIMPLE,
        "dependency names only know %n %N %p %i %j (+ host ones)",
    )
    add("dep-self", "[Unit]\nWants=h-dep-self.service\nAfter=h-dep-self.service\n" + _SIMPLE)
    add("dep-dup", "[Unit]\nWants=dup.target dup.target\nWants=dup.target\n" + _SIMPLE)
    add(
        "dep-services",
        "[Unit]\nWants=other.service\nAfter=other.service\nConflicts=h-dep-all.service\n" + _SIMPLE,
    )
    add("dep-in-service-section", "[Service]\nExecStart=/bin/true\nWants=wrong.target\n")
    # --- legacy / moved keys (§1.7) ----------------------------------------------------
    add(
        "legacy-startlimit",
        "[Unit]\nStartLimitInterval=20\n[Service]\nExecStart=/bin/true\n"
        "StartLimitInterval=30\nStartLimitBurst=3\nStartLimitAction=none\n",
    )
    add(
        "legacy-propagate",
        "[Unit]\nPropagateReloadTo=a1.target\nPropagateReloadFrom=b1.target\n" + _SIMPLE,
    )
    # --- conditions --------------------------------------------------------------------
    add(
        "cond-basic",
        "[Unit]\nConditionPathExists=/tmp\nConditionPathExists=|!/nonexistent\n"
        "AssertPathExists=/etc\nConditionHost=!nohost\n" + _SIMPLE,
    )
    add(
        "cond-reset",
        "[Unit]\nConditionPathExists=/a\nConditionHost=x\n"
        "ConditionPathExists=\nConditionPathIsDirectory=/b\n" + _SIMPLE,
    )
    add("cond-relative", "[Unit]\nConditionPathExists=relative\nConditionFoo=bar\n" + _SIMPLE)
    # --- specifiers in Description (§2.3) ----------------------------------------------
    add("spec-desc", "[Unit]\nDescription=%n|%N|%p|%P|%i|%I|%j|%J|%f|%%\n" + _SIMPLE)
    add("spec-desc-unknown", "[Unit]\nDescription=good\nDescription=bad %z here\n" + _SIMPLE)
    add("spec-desc-literal", "[Unit]\nDescription=100% sure %, 50%\n" + _SIMPLE)
    add("spec-desc-unknown-many", "[Unit]\nDescription=%k %x %D\n" + _SIMPLE)
    add(
        "spec-dash-prefix-name",
        "[Unit]\nDescription=%p/%j/%J/%f\n[Service]\nExecStart=/bin/echo %p %j %J %P %f\n",
    )
    add(
        "spec-escaped-name\\x2dx",
        "[Unit]\nDescription=%p|%P|%j|%J|%f\n[Service]\nExecStart=/bin/echo %n %N %P %J %f\n",
    )
    add("spec:colon", "[Unit]\nDescription=%n %p %f\n[Service]\nExecStart=/bin/echo %N %J\n")
    return p


def _templates() -> list[Probe]:
    """Template files and the one instance of each that is probed."""
    spec_body = (
        "[Unit]\nDescription=%n|%N|%p|%P|%i|%I|%j|%J|%f|%%\nWants=%i.target\n"
        "[Service]\nExecStart=/bin/echo %n %N %p %P %i %I %j %J %f %%\n"
        "Environment=INST=%i UNESC=%I\nWorkingDirectory=/srv/%I\n"
    )
    items = [
        ("probe-tmpl@.service", "probe-tmpl@a-b\\x2dc.service", spec_body),
        ("probe-tmpl2@.service", "probe-tmpl2@a@b.service", spec_body),
        (
            "probe-dash-tmpl-x@.service",
            "probe-dash-tmpl-x@\\xc3\\xa9t\\xc3\\xa9.service",
            spec_body,
        ),
        ("probe-tmpl3@.service", "probe-tmpl3@-.service", spec_body),
        ("probe-tmpl4@.service", "probe-tmpl4@foo-bar--baz.service", spec_body),
        (
            "probe-tmpl-bad@.service",
            "probe-tmpl-bad@x.service",
            "[Service]\nExecStart=/bin/echo %i %z\n",
        ),
        (
            "probe-tmpl-ign@.service",
            "probe-tmpl-ign@y.service",
            "[Unit]\nDescription=%i %z\n[Service]\nExecStart=-/bin/echo %I %z\n"
            "ExecStartPost=/bin/echo %I\n",
        ),
    ]
    return [Probe(inst, tmpl, text, "hand", "template instance") for tmpl, inst, text in items]


# ---------------------------------------------------------------------------
# fuzzing

_SEEDS = [
    "[Unit]\nDescription=Web frontend %n\nWants=net1.target\nAfter=net1.target db1.target\n"
    "[Service]\nType=simple\nExecStartPre=-/bin/mkdir -p /run/web\n"
    'ExecStart=/usr/bin/web --port 8080 "--name=%p"\nRestart=on-failure\nRestartSec=5\n'
    'TimeoutStopSec=30\nEnvironment=MODE=prod "GREETING=hello world"\n'
    "[Install]\nWantedBy=multi-user.target\n",
    "[Unit]\nDescription=Batch job\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
    "ExecStart=/bin/sh -c 'echo one; echo two'\nExecStart=/bin/echo done\n"
    "ExecStop=/bin/echo stop\nTimeoutStartSec=0\nKillMode=mixed\n",
    "[Unit]\nDescription=Limits and signals\nBindsTo=db1.target\nPartOf=grp1.target\n"
    "[Service]\nExecStart=/usr/bin/daemon -f\nKillSignal=SIGINT\nFinalKillSignal=SIGQUIT\n"
    "SendSIGKILL=no\nLimitNOFILE=1024:4096\nLimitCPU=1h\nUMask=0027\nNice=-5\n"
    "WorkingDirectory=/srv/app\n",
    "[Unit]\nDescription=Continuation heavy\nRequires=a1.target \\\n  b1.target\n"
    "[Service]\nExecStart=/bin/echo first \\\n  second \\\n# comment inside\n  third\n"
    "Environment=A=1 \\\n B=2\nRuntimeMaxSec=1h 30min\n",
    "# a comment\n; another\n[Unit]\nDescription=Docker-ish %i\nConflicts=other1.target\n"
    "Before=late1.target\n[Service]\nTimeoutStartSec=0\nExecStartPre=-/usr/bin/docker kill %p\n"
    "ExecStartPre=-/usr/bin/docker rm %p\nExecStart=/usr/bin/docker run --name %p busybox "
    '/bin/sh -c "while true; do echo Hello World; sleep 1; done"\n'
    "ExecStop=/usr/bin/docker stop %p\n[X-Fleet]\nConflicts=web*.service\n",
    "[Unit]\nDescription=Exec prefixes\n[Service]\nType=oneshot\n"
    "ExecStart=-@/bin/echo argv0 'single quoted' \"double quoted\"\n"
    "ExecStart=:/bin/echo $NOT_EXPANDED ${ALSO}\nExecStart=+/bin/echo a \\; b\n"
    "ExecStartPost=!/bin/echo x\\ty\nRestart=on-failure\nTimeoutStopSec=1min 30s\n",
    "[Unit]\nDescription=Environment quoting\n[Service]\nExecStart=/bin/env\n"
    "Environment=ONE='one' \"TWO='two two' too\" THREE=\nEnvironment=MID=a'b c'd\n"
    "EnvironmentFile=-/etc/default/foo\nEnvironmentFile=/etc/bar.env\nRestart=always\n",
    "[Unit]\nDescription=Booleans %% and times\n[Service]\nType=oneshot\n"
    "ExecStart=/bin/true\nRemainAfterExit=true\nSendSIGKILL=off\nTimeoutStartSec=5min 20s\n"
    "TimeoutStopSec=2.5\nRestartSec=500ms\n",
    "[Unit]\r\nDescription=CRLF seed\r\nAfter=a1.target\r\n[Service]\r\n"
    "ExecStart=/bin/echo crlf\r\nRestart=on-abnormal\r\nNice=10\r\n",
    "[Unit]\nDescription=Deps %N\nWants=w1.target w2.target\nRequisite=q1.target\n"
    "After=w1.target\nBefore=b1.target\n[Service]\nType=forking\nExecStart=/usr/sbin/forky\n"
    "ExecReload=/bin/kill -HUP $MAINPID\nUMask=0077\nLimitNPROC=100\nLimitCORE=infinity\n",
    '[Service]\nExecStart=/bin/echo \\x41\\101\\u00e9 \\n end\nEnvironment="X=a b" Y=\\x41\n'
    "KillMode=process\nTimeoutSec=45\n",
    "[Unit]\nDescription=Template-ish %p %j\n[Service]\nExecStart=/usr/bin/worker --id=%i "
    "--name=%J\nExecStopPost=/bin/rm -f /run/worker-%i.pid\nRestart=on-watchdog\n",
]

# characters the fuzzer inserts (no NUL; all valid UTF-8)
_ALPHABET = list("\\\"'%;#=[] \t$@-+!:{}/.,*") + list("abzAZ09") + ["\r", "\n", "é", "✓", "\\\n"]
_KEYS = [
    "Description",
    "Type",
    "Restart",
    "ExecStart",
    "ExecStop",
    "Environment",
    "TimeoutSec",
    "TimeoutStartSec",
    "RestartSec",
    "KillMode",
    "Wants",
    "After",
    "UMask",
    "Nice",
    "LimitNOFILE",
    "RemainAfterExit",
    "WorkingDirectory",
    "KillSignal",
    "BindTo",
]
_VALUES = [
    "",
    "yes",
    "no",
    "0",
    "infinity",
    "5min",
    "garbage",
    "oneshot",
    "simple",
    "always",
    "/bin/true",
    "-/bin/false arg",
    '"unbalanced',
    "a\\",
    "%n",
    "%z",
    "%%",
    "x.target",
    "A=1 B=2",
    "1:2",
    "0077",
    "-5",
    "SIGINT",
    "mixed",
    "on-failure",
    "'q'",
    "\\x41",
]


def _sanitize_specifiers(text: str) -> str:
    """Replace host-dependent specifiers (%u, %h, %H, …) by %z (unknown to systemd 252)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "%":
            out.append("%%")
        elif nxt.isascii() and nxt.isalpha() and nxt not in NAME_SPECIFIERS + UNKNOWN_SPECIFIERS:
            out.append("%z")
        else:
            out.append("%" + nxt)
        i += 2
    return "".join(out)


def _mutate(text: str, rng: random.Random) -> str:
    op = rng.randrange(17)
    lines = text.split("\n")
    li = rng.randrange(len(lines))
    line = lines[li]
    if op == 0:  # insert a character
        pos = rng.randrange(len(text) + 1)
        return text[:pos] + rng.choice(_ALPHABET) + text[pos:]
    if op == 1 and text:  # delete 1-3 characters
        pos = rng.randrange(len(text))
        return text[:pos] + text[pos + rng.randint(1, 3) :]
    if op == 2:  # duplicate a line
        lines.insert(li, line)
    elif op == 3 and len(lines) > 1:  # drop a line
        del lines[li]
    elif op == 4 and len(lines) > 1:  # swap two lines
        lj = rng.randrange(len(lines))
        lines[li], lines[lj] = lines[lj], lines[li]
    elif op == 5:  # break or mangle a section header
        headers = [i for i, ln in enumerate(lines) if ln.startswith("[")]
        if headers:
            hi = rng.choice(headers)
            lines[hi] = rng.choice(
                [
                    lines[hi].rstrip("]\r"),
                    lines[hi] + " junk",
                    lines[hi].lower(),
                    lines[hi].upper(),
                    " " + lines[hi],
                    lines[hi] + "]",
                    "[" + lines[hi],
                ]
            )
    elif op == 6:  # stray backslash at end of a line (continuation) or backslash-space
        lines[li] = line + rng.choice(["\\", "\\", "\\  ", "\\\\", "\\\\\\"])
    elif op == 7:  # stray quote somewhere in a line
        pos = rng.randrange(len(line) + 1)
        lines[li] = line[:pos] + rng.choice("\"'") + line[pos:]
    elif op == 8:  # stray specifier
        pos = rng.randrange(len(line) + 1)
        spec = rng.choice(["%", "%%", "%n", "%i", "%I", "%z", "%k", "%f", "%j", "%P", "%,"])
        lines[li] = line[:pos] + spec + line[pos:]
    elif op == 9:  # random whitespace around '=' or at line ends
        if "=" in line:
            k, _, v = line.partition("=")
            lines[li] = (
                rng.choice([" ", "\t", "  ", ""])
                + k
                + rng.choice([" ", "\t", ""])
                + "="
                + rng.choice([" ", "\t", ""])
                + v
                + rng.choice([" ", "\t", "", "\r"])
            )
        else:
            lines[li] = rng.choice([" ", "\t"]) + line
    elif op == 10:  # random key case
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            k, _, v = line.partition("=")
            k = rng.choice([k.lower(), k.upper(), k.swapcase(), k[:1].lower() + k[1:]])
            lines[li] = k + "=" + v
    elif op == 11:  # blank line or comment line inserted
        lines.insert(li, rng.choice(["", "   ", "# fuzz comment", "; fuzz \\", "#\\"]))
    elif op == 12:  # join with the next line via continuation
        lines[li] = line + "\\"
        if rng.random() < 0.5:
            lines.insert(li + 1, rng.choice(["  indented", "# comment", "\tx", ""]))
    elif op == 13:  # replace a value
        if "=" in line:
            k, _, _v = line.partition("=")
            lines[li] = k + "=" + rng.choice(_VALUES)
    elif op == 14:  # insert a random assignment
        lines.insert(li, rng.choice(_KEYS) + "=" + rng.choice(_VALUES))
    elif op == 15:  # CRLF for the whole file or a line
        if rng.random() < 0.5:
            return text.replace("\n", "\r\n")
        lines[li] = line + "\r"
    else:  # insert a line from another seed
        other = rng.choice(_SEEDS).split("\n")
        lines.insert(li, rng.choice(other))
    return "\n".join(lines)


def _fuzz(count: int, rng: random.Random) -> list[Probe]:
    out: list[Probe] = []
    for idx in range(count):
        seed_idx = idx % len(_SEEDS)
        text = _SEEDS[seed_idx]
        n_mut = rng.randint(1, 5)
        for _ in range(n_mut):
            text = _mutate(text, rng)
        text = _sanitize_specifiers(text).replace("\0", "")
        text.encode("utf-8")  # must be valid
        out.append(
            Probe(
                f"z-fuzz-{idx:03d}.service",
                f"z-fuzz-{idx:03d}.service",
                text,
                "fuzz",
                f"seed {seed_idx}, {n_mut} mutations",
            )
        )
    return out


def corpus() -> list[Probe]:
    """The whole corpus, deterministic (fixed seed)."""
    rng = random.Random(SEED)
    probes = [
        Probe(f"h-{name}.service", f"h-{name}.service", text, "hand", note)
        for name, text, note in _hand()
    ]
    # the seeds themselves, unmutated, are probes too
    probes += [
        Probe(f"z-seed-{i:02d}.service", f"z-seed-{i:02d}.service", s, "fuzz", "unmutated seed")
        for i, s in enumerate(_SEEDS)
    ]
    probes += _templates()
    probes += _fuzz(FUZZ_COUNT, rng)
    names = [pr.name for pr in probes]
    files = [pr.file for pr in probes]
    assert len(set(names)) == len(names), "probe names must be unique"
    assert len(set(files)) == len(files), "one probe per file (one instance per template)"
    for pr in probes:
        assert "\0" not in pr.text
        pr.text.encode("utf-8")
    return probes


def unit_files(probes: Iterable[Probe]) -> dict[str, str]:
    return {pr.file: pr.text for pr in probes}


if __name__ == "__main__":  # pragma: no cover - manual inspection helper
    import sys

    all_probes = corpus()
    if len(sys.argv) > 1:
        for pr in all_probes:
            if pr.name in sys.argv[1:]:
                print(f"=== {pr.name} ({pr.file}) {pr.note}\n{pr.text!r}")
    else:
        print(f"{len(all_probes)} probes")
