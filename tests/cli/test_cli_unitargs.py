"""Arguments → unit names and unit files (fleet.md §2.4, §2.5), without a server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_support import HELLO, write

from flotte.cli import unitargs as A
from flotte.unit.serialize import unit_hash


@pytest.mark.parametrize(("arg", "name"), [
    ("hello", "hello.service"),
    ("hello.service", "hello.service"),
    ("./mongo.service", "mongo.service"),
    ("instances/apache@8082.service", "apache@8082.service"),
    ("/abs/dir/web@.service", "web@.service"),
    ("web.socket", "web.socket"),
    ("foo.target", "foo.target"),  # fleetctl: foo.target.service (fixed, docs/cli.md)
    ("foo.slice", "foo.slice"),
    ("hello.conf", "hello.conf.service"),
])
def test_unit_name(arg: str, name: str) -> None:
    assert A.unit_name(arg) == name


def test_default_type_is_for_the_path() -> None:
    assert A.with_default_type("hello") == "hello.service"
    assert A.with_default_type("units/hello") == "units/hello.service"
    assert A.with_default_type("v1.2/hello") == "v1.2/hello.service"  # dot in a directory
    assert A.with_default_type("hello.service") == "hello.service"


def test_templates_and_instances() -> None:
    assert A.is_template("apache@.service")
    assert not A.is_template("apache@8080.service")
    assert not A.is_template("apache.service")
    assert A.template_of("apache@8080.service") == "apache@.service"
    assert A.template_of("apache@.service") is None
    assert A.template_of("apache.service") is None
    assert A.template_of("@x.service") is None
    assert A.instance_example("apache@.service") == "apache@1.service"


def test_check_name_uses_fleets_rules() -> None:
    assert A.check_name("hello.service") is None
    problem = A.check_name("hel lo.service")
    assert problem is not None and "invalid character" in problem


def test_patterns_match_registry_units() -> None:
    known = ["apache@8080.service", "apache@8081.service", "apache-secretary@8080.service",
             "nginx.service"]
    assert A.is_pattern("apache@*") and not A.is_pattern("apache@1")
    assert A.match_units("apache@*", known) == ["apache@8080.service", "apache@8081.service"]
    found, missing = A.resolve_existing(["apache@*", "nginx", "nope", "nginx.service"], known)
    assert found == ["apache@8080.service", "apache@8081.service", "nginx.service"]
    assert missing == ["nope.service"]
    assert A.resolve_existing(["x@*"], known) == ([], ["x@*.service"])


def test_read_unit_file_and_symlink(tmp_path: Path) -> None:
    tpl = write(tmp_path / "web@.service", "[Service]\nExecStart=/bin/web %i\n")
    os.mkdir(tmp_path / "instances")
    link = tmp_path / "instances" / "web@1.service"
    link.symlink_to("../web@.service")
    local = A.read_unit_file(str(link), A.unit_name(str(link)))
    assert local.options == (("Service", "ExecStart", "/bin/web %i"),)
    assert local.path == str(link)
    assert local.hash == unit_hash(local.options) == A.read_unit_file(tpl, "web@.service").hash


def test_local_file_and_template_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "hello.service", HELLO)
    assert A.local_file("hello") == "hello.service"
    assert A.local_file("nope") is None
    os.mkdir("units")
    write(tmp_path / "units" / "web@.service", "[Service]\nExecStart=/bin/web\n")
    assert A.local_template("units/web@5.service", "web@5.service") == "units/web@.service"
    assert A.local_template("web@5.service", "web@5.service") is None
    assert A.local_template("hello.service", "hello.service") is None


def test_read_errors(tmp_path: Path) -> None:
    with pytest.raises(A.SourceError, match=r"cannot read .*No such file"):
        A.read_unit_file(str(tmp_path / "nope.service"), "nope.service")
    with pytest.raises(A.SourceError, match="is a directory"):
        A.read_unit_file(str(tmp_path), "x.service")
    bad = write(tmp_path / "bad.service", "[Service]\nExecStart=/bin/true\nno equals sign\n")
    with pytest.raises(A.SourceError, match=r"bad\.service:3: "):
        A.read_unit_file(bad, "bad.service")
    empty = write(tmp_path / "empty.service", "")
    with pytest.raises(A.SourceError, match="is empty"):
        A.read_unit_file(empty, "empty.service")


def test_unknown_x_fleet_keys_warn(tmp_path: Path) -> None:
    path = write(tmp_path / "side@.service", "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n"
                                             "ConditionMachineOf=apache@%i.service\n")
    local = A.read_unit_file(path, "side@1.service")
    assert len(local.warnings) == 1
    assert local.warnings[0].startswith(f"{path}:5: unrecognized requirement in [X-Fleet] "
                                        "section: ConditionMachineOf")
