"""Shell completion through click's mechanism; unit names come from the API."""

from __future__ import annotations

import sys

import pytest
from cli_support import HELLO, Cluster, Run, options_of
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from flotte.cli.console import Console
from flotte.cli.main import cli


def complete(cluster_endpoint: str | None, words: str) -> list[tuple[str, str]]:
    """What the bash script gets back for ``COMP_WORDS=words`` (completing the last word)."""
    parts = words.split(" ")
    env = {"_FLEETCTL_COMPLETE": "bash_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1), "FLOTTE_ENDPOINT": cluster_endpoint,
           "FLEETCTL_ENDPOINT": None}
    result = CliRunner(env=env).invoke(cli, [], prog_name="fleetctl")
    assert result.exit_code == 0, result.output
    pairs = [line.split(",", 1) for line in result.stdout.splitlines()]
    return [(kind, value) for kind, value in pairs]


@pytest.fixture
def units(cluster: Cluster) -> Cluster:
    for name in ("hello.service", "help.service", "web@1.service"):
        cluster.add_unit(name, options_of(HELLO))
    return cluster


def test_unit_names_come_from_the_api(units: Cluster) -> None:
    assert complete(units.endpoint, "fleetctl stop he") == [
        ("plain", "hello.service"), ("plain", "help.service")]
    assert complete(units.endpoint, "fleetctl status w") == [("plain", "web@1.service")]
    # --endpoint given on the command line is used too
    got = complete(None, f"fleetctl --endpoint {units.endpoint} journal hel")
    assert got == [("plain", "hello.service"), ("plain", "help.service")]


def test_files_for_submit_and_both_for_start(units: Cluster) -> None:
    assert complete(units.endpoint, "fleetctl submit he") == [("file", "he")]
    assert complete(units.endpoint, "fleetctl start he") == [
        ("file", "he"), ("plain", "hello.service"), ("plain", "help.service")]
    assert complete(units.endpoint, "fleetctl start units/he") == [("file", "units/he")]


def test_unreachable_api_completes_nothing_silently() -> None:
    env = {"_FLEETCTL_COMPLETE": "bash_complete", "COMP_WORDS": "fleetctl stop he",
           "COMP_CWORD": "2", "FLOTTE_ENDPOINT": "unix:///nonexistent/flotte.sock"}
    result = CliRunner(env=env).invoke(cli, [], prog_name="fleetctl")
    assert (result.exit_code, result.stdout.strip(), result.stderr) == (0, "", "")
    bad = ShellComplete(cli, {}, "fleetctl", "_FLEETCTL_COMPLETE")
    assert [c.value for c in bad.get_completions(["--endpoint", "nonsense", "stop"], "x")] \
        == []


def test_verbs_complete(units: Cluster) -> None:
    got = [v for _, v in complete(units.endpoint, "fleetctl list-")]
    assert got == ["list-machines", "list-unit-files", "list-units"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(fleetctl: Run, shell: str) -> None:
    r = fleetctl("completion", shell)
    assert r.exit_code == 0
    assert "_FLEETCTL_COMPLETE" in r.stdout
    assert "_FLOTTE_COMPLETE" in fleetctl("completion", shell, prog="flotte").stdout
    assert fleetctl("completion", "tcsh").exit_code == 2


def test_progress_line_only_on_a_tty(capsys: pytest.CaptureFixture[str]) -> None:
    con = Console(progress=True)
    con.progress("[1s] waiting for a.service: waiting to be scheduled")
    con.out("Unit a.service launched")
    con.clear()  # nothing shown any more: no output
    captured = capsys.readouterr()
    assert captured.err == "\r\x1b[K[1s] waiting for a.service: waiting to be scheduled\r\x1b[K"
    assert captured.out == "Unit a.service launched\n"
    quiet = Console()  # pytest's stderr is not a terminal
    assert not quiet.progress_enabled or sys.stderr.isatty()
    quiet.progress("x")
    assert capsys.readouterr().err == ("" if not quiet.progress_enabled else "\r\x1b[Kx")
