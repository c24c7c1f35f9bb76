"""`flotte verify`: human output, the --json contract, and garbage input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from flotte.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"
KEYS = {"file", "unit", "ok", "load_state", "errors", "warnings", "options", "exec", "x_fleet"}


def run(*args: str, input: bytes | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["verify", *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_seed_units_verify(tmp_path: Path) -> None:
    files = sorted(str(p) for p in SEED.rglob("*.service"))
    code, out = run(*files)
    assert code == 0, out
    # The guide's mistakes are reported, in the FILE:LINE: severity: message form.
    assert f"{SEED}/ch08/apache@.service:3: warning: After=etcd.servicedocker.service" in out
    assert "ch09/apache-secretary@.service:37: warning: unrecognized requirement in " \
        "[X-Fleet] section: ConditionMachineOf" in out


def test_json_contract(tmp_path: Path) -> None:
    unit = tmp_path / "web@.service"
    unit.write_text("[Unit]\nDescription=web %i\nAfter=a.service\nbogus\n[Service]\n"
                    "ExecStartPre=-/bin/mkdir -p /tmp/%i\nExecStart=@/bin/sleep sleeper 10\n"
                    "[X-Fleet]\nConflicts=web@*.service\nMachineMetadata=\"a=1\" \"b=2\"\n")
    code, out = run("--json", str(unit))
    assert code == 0
    (report,) = json.loads(out)
    assert set(report) == KEYS
    assert report["file"] == str(unit)
    assert report["unit"] == "web@test_instance.service"
    assert report["ok"] is True and report["load_state"] == "loaded"
    assert report["errors"] == []
    assert report["warnings"] == [{"line": 4, "message": "Missing '=', ignoring line.",
                                   "fix": "write settings as Key=value"}]
    assert report["options"][0] == ["Unit", "Description", "web %i"]
    assert report["options"][-1] == ["X-Fleet", "MachineMetadata", '"a=1" "b=2"']
    assert report["exec"]["ExecStartPre"] == [{
        "path": "/bin/mkdir", "argv": ["/bin/mkdir", "-p", "/tmp/test_instance"],
        "ignore_failure": True, "flags": ["ignore-failure"]}]
    assert report["exec"]["ExecStart"][0]["argv"] == ["sleeper", "10"]
    assert report["x_fleet"]["conflicts"] == ["web@*.service"]
    assert report["x_fleet"]["machine_metadata"] == {"a": ["1"], "b": ["2"]}


def test_json_for_failures(tmp_path: Path) -> None:
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/echo 'unbalanced\n")
    masked = tmp_path / "masked.service"
    masked.write_text("")
    broken = tmp_path / "broken.service"
    broken.write_text("[Unit\nDescription=x\n")
    code, out = run("--json", str(bad), str(masked), str(broken))
    assert code == 1
    states = {r["unit"]: (r["ok"], r["load_state"]) for r in json.loads(out)}
    assert states == {"bad.service": (False, "bad-setting"),
                      "masked.service": (False, "masked"),
                      "broken.service": (False, "error")}
    reports = {r["unit"]: r for r in json.loads(out)}
    assert reports["bad.service"]["errors"][0]["line"] == 2
    assert reports["broken.service"]["errors"][0] == {
        "line": 1, "message": "Invalid section header '[Unit'",
        "fix": "a section header is a whole line of the form [Name]"}


def test_conflicting_x_fleet_is_bad_setting(tmp_path: Path) -> None:
    unit = tmp_path / "pin.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=abc\n"
                    "MachineOf=other.service\n")
    code, out = run(str(unit))
    assert code == 1
    assert f"{unit}:5: error: MachineID cannot be used with Peers" in out


@pytest.mark.parametrize("content", [
    bytes(range(256)) * 64,
    b"[Unit]\nDescription=\xff\xfe\n",
    b"[Service]\nExecStart=/bin/echo " + b"x" * (2 * 1024 * 1024) + b"\n",
])
def test_garbage_input_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "garbage.service"
    f.write_bytes(content)
    code, out = run(str(f))
    assert code == 1
    assert f"{f}:" in out and ": error: " in out


def test_bad_names_and_paths(tmp_path: Path) -> None:
    f = tmp_path / "ok.service"
    f.write_text("[Service]\nExecStart=/bin/true\n")
    code, out = run("--name", "../x.service", str(f))
    assert code == 1 and "error" in out and "'/'" in out
    code, out = run(str(tmp_path / "missing.service"))
    assert code == 1 and "cannot read" in out
    code, out = run(str(tmp_path))
    assert code == 1 and "is a directory" in out
    weird = tmp_path / "foo@%i.service"
    weird.write_text("[Service]\nExecStart=/bin/true\n")
    code, out = run(str(weird))
    assert code == 1 and "%" in out


def test_stdin_needs_a_name() -> None:
    code, out = run("-", input=b"[Service]\nExecStart=/bin/true\n")
    assert code == 2 and "--name" in out
    code, out = run("--name", "std.service", "-", input=b"[Service]\nExecStart=/bin/true\n")
    assert code == 0, out


def test_go_systemd_dialect(tmp_path: Path) -> None:
    f = tmp_path / "g.service"
    f.write_text("[Service]\nExecStart=/bin/true\nGarbage line\n")
    assert run(str(f))[0] == 0  # systemd: a warning
    code, out = run("--dialect", "go-systemd", str(f))
    assert code == 1 and "unexpected newline" in out


@pytest.mark.parametrize("prog", ["flotte", "fleetctl"])
def test_console_scripts(tmp_path: Path, prog: str) -> None:
    f = tmp_path / "garbage.service"
    f.write_bytes(b"\x00\x01\x02\xff" * 1000)
    exe = Path(sys.executable).parent / prog
    env = dict(os.environ, PYTHONWARNINGS="error")
    proc = subprocess.run([str(exe), "verify", str(f)], capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "not valid UTF-8" in proc.stdout
