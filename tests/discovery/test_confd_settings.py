"""Settings: confd's Go-style flags, confd.toml, precedence (flags win), backend choice."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from flotte.cli import confd as confd_cli
from flotte.cli.connection import CliState
from flotte.discovery.confd.logfmt import ConfdFormatter
from flotte.discovery.confd.settings import (
    BackendSpec,
    ConfigError,
    Settings,
    etcd_url,
    merge,
    parse_config_file,
    parse_debounce,
    resolve_backend,
    validate,
)

# -- pure pieces ------------------------------------------------------------------------


def test_merge_flags_over_file_over_defaults() -> None:
    defaults = Settings()
    file_values = {"interval": 60.0, "prefix": "/file", "backend": "etcdv3", "watch": True}
    flags = {"interval": 5.0, "watch": False}
    s = merge(defaults, file_values, flags)
    assert (s.interval, s.prefix, s.backend, s.watch) == (5.0, "/file", "etcdv3", False)
    assert s.interval_explicit
    assert not merge(defaults, {}, {}).interval_explicit
    with pytest.raises(ValueError):
        merge(defaults, {"nope": 1}, {})


def test_mode() -> None:
    assert Settings().mode == "interval"
    assert Settings(watch=True).mode == "watch"
    assert Settings(watch=True, onetime=True).mode == "onetime"


def test_config_file_keys_and_spellings() -> None:
    text = """\
backend = "etcdv3"
Nodes = ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
prefix = "/production"
confdir = "/srv/confd"
interval = 30
watch = true
noop = false
sync-only = true
log-level = "debug"
keepstagefile = true
client_cert = "/c.pem"
debounce = "0.2:3"
srv_domain = "example.com"
whatever = 1

[confd]
watch = false
"""
    values, warnings = parse_config_file(text, "/etc/confd/confd.toml")
    assert values == {
        "backend": "etcdv3", "nodes": ("http://10.0.0.1:2379", "http://10.0.0.2:2379"),
        "prefix": "/production", "confdir": "/srv/confd", "interval": 30.0,
        "interval_explicit": True, "watch": True, "noop": False, "sync_only": True,
        "log_level": "debug", "keep_stage_file": True, "client_cert": "/c.pem",
        "debounce": 0.2, "debounce_max": 3.0}
    assert warnings == [
        "/etc/confd/confd.toml:13: 'srv_domain' is ignored: flotte confd has no SRV discovery",
        "/etc/confd/confd.toml:14: unknown key 'whatever' is ignored",
        "/etc/confd/confd.toml: the [confd] table is ignored (confd reads top-level keys "
        "since 0.5): move its keys above any [table]"]


@pytest.mark.parametrize(("text", "words"), [
    ('interval = "60"\n', "confd.toml:1: interval must be a number of seconds"),
    ("nodes = \"http://a:1\"\n", "nodes must be an array of strings"),
    ("watch = 1\n", "watch must be true or false"),
    ("sync-only = true\nsync_only = false\n", "confd.toml:2: 'sync_only' sets sync_only again"),
    ("watch = \n", "invalid TOML"),
])
def test_config_file_errors(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config_file(text, "confd.toml")
    assert words in str(err.value)


@pytest.mark.parametrize(("value", "want"), [
    (0.1, (0.1, 1.0)), ("0.1", (0.1, 1.0)), ("0.05:0.5", (0.05, 0.5)), (0, (0.0, 0.0)),
])
def test_debounce(value: object, want: tuple[float, float]) -> None:
    assert parse_debounce(value) == pytest.approx(want)


@pytest.mark.parametrize("value", ["x", "1:0.5", "-1", "0.1:inf", "0.1:nan"])
def test_bad_debounce(value: str) -> None:
    with pytest.raises(ConfigError):
        parse_debounce(value)


@pytest.mark.parametrize(("nodes", "url"), [
    (["http://127.0.0.1:2379"], "etcd://127.0.0.1:2379"),
    (["http://10.0.0.1:4001", "http://10.0.0.2:4001"], "etcd://10.0.0.1:4001,10.0.0.2:4001"),
    (["10.0.0.1:2379"], "etcd://10.0.0.1:2379"),
    (["http://h1:1,http://h2:2"], "etcd://h1:1,h2:2"),
    (["https://h:2379"], "etcds://h:2379"),
    (["etcd://h"], "etcd://h:2379"),
    (["http://[::1]:2379"], "etcd://[::1]:2379"),
])
def test_etcd_url(nodes: list[str], url: str) -> None:
    assert etcd_url(nodes) == url


def test_etcd_url_carries_credentials_and_certificates() -> None:
    s = Settings(username="root", password="p&w", client_cert="/c.pem", client_key="/k.pem",
                 client_cakeys="/ca.pem")
    assert etcd_url(["https://h:2379"], s) == (
        "etcds://h:2379?ca=/ca.pem&cert=/c.pem&key=/k.pem&user=root&password=p%26w")


@pytest.mark.parametrize(("nodes", "words"), [
    (["http://a:1", "https://b:2"], "mix http:// and https://"),
    (["ftp://a:1"], "use http://host:port"),
    (["http://a:1/v2"], "only scheme://host:port"),
    (["http://a:x"], "bad port"),
    ([], "no etcd node"),
])
def test_bad_nodes(nodes: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        etcd_url(nodes)


def test_backend_choice() -> None:
    env: dict[str, str] = {}
    assert resolve_backend(Settings(), env) == BackendSpec("flotte", "")
    assert resolve_backend(Settings(nodes=("http://h:4001",)), env) == \
        BackendSpec("etcd", "etcd://h:4001")  # the seed's confd -node=… without -backend
    assert resolve_backend(Settings(backend="etcd"), env) == \
        BackendSpec("etcd", "etcd://127.0.0.1:2379")
    assert resolve_backend(Settings(backend="etcdv3"), {"ETCDCTL_PEERS": "http://a:1,http://b:2"}
                           ) == BackendSpec("etcd", "etcd://a:1,b:2")
    assert resolve_backend(Settings(backend="flotte", nodes=("unix:///x.sock",)), env) == \
        BackendSpec("flotte", "unix:///x.sock")
    with pytest.raises(ConfigError, match="one -node"):
        resolve_backend(Settings(backend="api", nodes=("http://a:1", "http://b:2")), env)


@pytest.mark.parametrize(("settings", "words"), [
    (Settings(backend="consul"), "'consul' is not supported"),
    (Settings(backend="etcd2"), "unknown backend"),
    (Settings(log_level="verbose"), "log-level"),
    (Settings(interval=0), "interval"),
])
def test_validate(settings: Settings, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        validate(settings)


def test_validate_normalises() -> None:
    s = validate(Settings(backend="EtcdV3", log_level="WARN"))
    assert (s.backend, s.log_level) == ("etcdv3", "warn")


# -- the command line -------------------------------------------------------------------


@pytest.mark.parametrize(("args", "want"), [
    (["-watch=false", "-noop=1", "--x=true", "-interval=5"],
     ["--no-watch", "--noop", "--x=true", "-interval=5"]),
    (["--sync-only=T", "--", "-watch=false"], ["--sync-only", "--", "-watch=false"]),
])
def test_go_bool_flags(args: list[str], want: list[str]) -> None:
    assert confd_cli.go_flags(args) == want


def test_go_bool_flag_bad_value() -> None:
    with pytest.raises(click.UsageError, match="invalid boolean value 'yes' for -watch"):
        confd_cli.go_flags(["-watch=yes"])


class Captured:
    settings: Settings
    spec: BackendSpec
    endpoint: str
    token: str | None


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Invoke ``flotte confd`` with ``args``; returns (result, what _main was given)."""
    monkeypatch.delenv("ETCDCTL_PEERS", raising=False)
    monkeypatch.delenv("ETCDCTL_ENDPOINTS", raising=False)
    for name in ("CONFD_CLIENT_CERT", "CONFD_CLIENT_KEY", "CONFD_CLIENT_CAKEYS",
                 "FLOTTE_ENDPOINT", "FLEETCTL_ENDPOINT", "FLOTTE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    captured = Captured()

    async def fake_main(settings: Settings, spec: BackendSpec, endpoint: str,
                        token: str | None, timeout: float) -> int:
        captured.settings, captured.spec = settings, spec
        captured.endpoint, captured.token = endpoint, token
        return 0

    monkeypatch.setattr(confd_cli, "_main", fake_main)
    no_file = str(tmp_path / "no-confd.toml")
    monkeypatch.setattr(confd_cli, "DEFAULT_CONFIG_FILE", no_file)

    def invoke(args: list[str], obj: CliState | None = None,
               env: dict[str, str] | None = None) -> tuple[Any, Captured]:
        result = CliRunner().invoke(confd_cli.confd, args, obj=obj, env=env)
        return result, captured

    return invoke


def test_confd_single_dash_flags(run: Any) -> None:
    result, got = run(["-backend", "etcdv3", "-node", "http://127.0.0.1:2379",
                       "-node=http://127.0.0.2:2379", "-confdir", "/srv/confd", "-watch",
                       "-interval", "30", "-prefix=/prod", "-log-level", "debug", "-noop",
                       "-sync-only", "-keep-stage-file"])
    assert result.exit_code == 0, result.output
    s = got.settings
    assert (s.backend, s.nodes, s.confdir, s.watch, s.interval, s.prefix, s.log_level) == (
        "etcdv3", ("http://127.0.0.1:2379", "http://127.0.0.2:2379"), "/srv/confd", True,
        30.0, "/prod", "debug")
    assert s.noop and s.sync_only and s.keep_stage_file and s.interval_explicit
    assert got.spec == BackendSpec("etcd", "etcd://127.0.0.1:2379,127.0.0.2:2379")


def test_confd_double_dash_flags(run: Any) -> None:
    result, got = run(["--backend=etcd", "--node", "http://h:4001", "--onetime", "--watch",
                       "--debounce", "0.05:0.5", "--poll", "0.1", "--cmd-timeout", "9"])
    assert result.exit_code == 0, result.output
    s = got.settings
    assert s.mode == "onetime" and (s.debounce, s.debounce_max, s.poll, s.cmd_timeout) == (
        0.05, 0.5, 0.1, 9.0)
    assert got.spec == BackendSpec("etcd", "etcd://h:4001")


def test_flags_beat_the_config_file(run: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "confd.toml"
    cfg.write_text('backend = "etcdv3"\nnodes = ["http://file:2379"]\ninterval = 60\n'
                   'prefix = "/file"\nwatch = true\nlog-level = "error"\n')
    result, got = run(["-config-file", str(cfg), "-interval", "5", "-prefix", "/flag",
                       "-watch=false"])
    assert result.exit_code == 0, result.output
    s = got.settings
    assert (s.interval, s.prefix, s.watch, s.log_level) == (5.0, "/flag", False, "error")
    assert got.spec == BackendSpec("etcd", "etcd://file:2379")
    # untouched flags do not hide the file
    result, got = run(["-config-file", str(cfg)])
    assert (got.settings.interval, got.settings.prefix, got.settings.watch) == (60.0, "/file",
                                                                             True)


def test_default_config_file_is_read_when_present(run: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "default.toml"
    cfg.write_text("interval = 7\n")
    monkeypatch.setattr(confd_cli, "DEFAULT_CONFIG_FILE", str(cfg))
    result, got = run([])
    assert result.exit_code == 0, result.output
    assert got.settings.interval == 7.0 and got.settings.config_file == str(cfg)


def test_missing_named_config_file_is_an_error(run: Any, tmp_path: Path) -> None:
    result, _ = run(["-config-file", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_bad_config_file_is_a_usage_error(run: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "confd.toml"
    cfg.write_text('\ninterval = "soon"\n')
    result, _ = run(["-config-file", str(cfg)])
    assert result.exit_code == 2
    assert f"{cfg}:2: interval must be a number of seconds" in result.output


def test_environment_client_certificates(run: Any) -> None:
    result, got = run(["-backend", "etcdv3", "-node", "https://h:2379"],
                      env={"CONFD_CLIENT_CERT": "/c.pem", "CONFD_CLIENT_KEY": "/k.pem"})
    assert result.exit_code == 0, result.output
    assert got.spec.url == "etcds://h:2379?cert=/c.pem&key=/k.pem"


@pytest.mark.parametrize(("args", "words"), [
    (["-backend", "consul"], "'consul' is not supported by flotte confd"),
    (["-log-level", "loud"], "log-level 'loud'"),
    (["-watch=maybe"], "invalid boolean value 'maybe' for -watch"),
    (["-interval", "0"], "-interval"),
    (["--debounce", "x"], "debounce"),
    (["-backend", "etcdv3", "-node", "ftp://h"], "use http://host:port"),
    (["-backend", "flotte", "-node", "tcp://h"], "-node: endpoint 'tcp://h'"),
])
def test_usage_errors(run: Any, args: list[str], words: str) -> None:
    result, _ = run(args)
    assert result.exit_code == 2, result.output
    assert words in result.output


def test_flotte_backend_uses_the_global_endpoint_and_token(run: Any) -> None:
    result, got = run([], obj=CliState("http://10.0.0.9:49153", "sekrit", 3.0))
    assert result.exit_code == 0, result.output
    assert got.spec == BackendSpec("flotte", "")
    assert (got.endpoint, got.token) == ("http://10.0.0.9:49153", "sekrit")
    result, got = run(["--endpoint", "unix:///run/f.sock"])
    assert (got.endpoint, got.token) == ("unix:///run/f.sock", None)
    result, got = run(["-backend", "flotte", "-node", "http://h:1/"], obj=CliState(token="t"))
    assert (got.endpoint, got.token) == ("http://h:1", "t")
    # run on its own (no root group), the command reads the same variables
    result, got = run([], env={"FLOTTE_ENDPOINT": "http://e:2", "FLOTTE_TOKEN": "tok"})
    assert (got.endpoint, got.token) == ("http://e:2", "tok")


def test_version_and_help(run: Any) -> None:
    result, _ = run(["-version"])
    assert result.exit_code == 0 and "confd 0.16.0 compatible" in result.output
    result, _ = run(["-help"])
    assert result.exit_code == 0
    for flag in ("-backend, --backend", "-node, --node", "-watch, --watch / --no-watch",
                 "-onetime", "-sync-only", "-confdir", "-interval", "-prefix", "-log-level",
                 "-noop", "-config-file"):
        assert flag in result.output


def test_log_format_is_confds() -> None:
    record = logging.LogRecord("flotte.confd", logging.WARNING, "", 0, "two\nlines %s", ("x",),
                               None)
    line = ConfdFormatter().format(record)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) \S+ "
                        r"flotte-confd\[\d+\]: WARNING two\n    lines x", line), line
    assert ConfdFormatter(bare=True).format(record) == "WARNING two\n    lines x"
