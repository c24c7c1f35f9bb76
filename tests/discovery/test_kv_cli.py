"""``flotte kv`` against a real API (unix socket, memory registry) and a real etcd.

Every behaviour test runs twice: through the API (``--endpoint``) and
straight on etcd (``--registry etcd://…``), because the two backends of
:mod:`flotte.discovery.kv` must be indistinguishable to a script.  Each test
writes under its own ``/services/t<random>`` directory, so the shared etcd
and API need no cleanup between tests.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from discovery.discovery_support import ApiThread, flotte_cmd, popen, wait_for
from etcd_server import EtcdServer
from flotte.api import make_app, serve
from flotte.cli.kv import kv, parse_import
from flotte.discovery.kv import (
    ApiKV,
    Change,
    KVBackend,
    RegistryKV,
    diff_snapshots,
    dir_node,
    flatten,
    normalize_key,
    under,
)
from flotte.registry import KeyValue
from support import require

# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Iterator[ApiThread]:
    server = ApiThread()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require("etcd", "etcd-server")
    server = EtcdServer(tmp_path_factory.mktemp("etcd-kv"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@dataclass
class Target:
    kind: str
    args: list[str]
    ns: str  # this test's directory

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None
            ) -> Result:
        return CliRunner().invoke(kv, [*self.args, *args], input=input, env=env)


@pytest.fixture(params=["api", "etcd"])
def target(request: pytest.FixtureRequest) -> Target:
    ns = f"/services/t{uuid.uuid4().hex[:10]}"
    if request.param == "api":
        server: ApiThread = request.getfixturevalue("api")
        return Target("api", ["--endpoint", server.endpoint], ns)
    etcd = request.getfixturevalue("etcd")
    return Target("etcd", ["--registry", etcd.url], ns)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


# -- pure parts ------------------------------------------------------------------------------------


def test_normalize_key_is_the_apis() -> None:
    assert normalize_key("services//web/") == "/services/web"
    assert normalize_key("") == "/"
    assert normalize_key("/") == "/"
    assert under("/a/b", "/a") and under("/a", "/a") and not under("/ab", "/a")
    assert under("/anything", "/")


def test_dir_node_lists_one_level_unless_recursive() -> None:
    kvs = [KeyValue(k, b"v", 1, 1, 1) for k in ("/s/a", "/s/d/x", "/s/d/y/z", "/s/e")]
    top = dir_node("/s", kvs, False)
    assert [(n.key, n.dir) for n in top.nodes] == [("/s/a", False), ("/s/d", True),
                                                  ("/s/e", False)]
    assert top.nodes[1].nodes == []
    deep = dir_node("/s", kvs, True)
    assert flatten(deep) == {"/s/a": "v", "/s/d/x": "v", "/s/d/y/z": "v", "/s/e": "v"}


def test_diff_snapshots_reports_creates_sets_and_deletes_in_key_order() -> None:
    before = {"/a": ("1", 5), "/b": ("2", 6), "/c": ("3", 7)}
    now = {"/a": ("1", 5), "/b": ("9", 8), "/d": ("4", 9)}
    assert list(diff_snapshots(before, now)) == [
        Change("set", "/b", "9", "2", 8), Change("delete", "/c", None, "3"),
        Change("create", "/d", "4", None, 9)]


def test_parse_import_accepts_export_and_etcd_json() -> None:
    assert parse_import('{"/a": "1"}') == {"/a": "1"}
    tree = {"action": "get", "node": {"key": "/s", "dir": True, "nodes": [
        {"key": "/s/a", "value": "1"}, {"key": "/s/d", "dir": True,
                                          "nodes": [{"key": "/s/d/b", "value": "2"}]}]}}
    assert parse_import(json.dumps(tree)) == {"/s/a": "1", "/s/d/b": "2"}


# -- the verbs, on both backends ---------------------------------------------------------------


def test_set_then_get(target: Target) -> None:
    key = f"{target.ns}/10.0.0.1"
    value = '{"host": "core-01", "ipv4_addr": "10.0.0.1", "port": 8080}'
    assert ok(target.run("set", key, value)) == value + "\n"
    assert ok(target.run("get", key)) == value + "\n"
    # relative keys are under the root, as etcdctl v2 took them
    assert ok(target.run("get", key.lstrip("/"))) == value + "\n"


def test_value_from_stdin(target: Target) -> None:
    ok(target.run("set", f"{target.ns}/k", input="from stdin\n"))
    assert ok(target.run("get", f"{target.ns}/k")) == "from stdin\n"


def test_get_missing_key_is_etcd_error_100_exit_4(target: Target) -> None:
    res = target.run("get", f"{target.ns}/nope")
    assert res.exit_code == 4
    assert res.stderr.startswith(f"Error:  100: Key not found ({target.ns}/nope)")
    assert res.stdout == ""


def test_get_of_a_directory_exits_1(target: Target) -> None:
    ok(target.run("set", f"{target.ns}/a", "1"))
    res = target.run("get", target.ns)
    assert res.exit_code == 1
    assert res.stderr.strip() == f"{target.ns}: is a directory"


def test_ls_lists_first_level_and_recursive_with_p(target: Target) -> None:
    ns = target.ns
    for key in ("b", "a", "d/x", "d/y/z"):
        ok(target.run("set", f"{ns}/{key}", key))
    assert ok(target.run("ls", ns)).splitlines() == [f"{ns}/a", f"{ns}/b", f"{ns}/d"]
    assert ok(target.run("ls", "--sort", "-r", "-p", ns + "/")).splitlines() == [
        f"{ns}/a", f"{ns}/b", f"{ns}/d/", f"{ns}/d/x", f"{ns}/d/y/", f"{ns}/d/y/z"]
    assert ok(target.run("ls", f"{ns}/a")).splitlines() == [f"{ns}/a"]
    assert ns in ok(target.run("ls", "/services")).splitlines()
    res = target.run("ls", f"{ns}/missing")
    assert res.exit_code == 4 and "100: Key not found" in res.stderr


def test_ls_json_is_an_etcd_v2_response(target: Target) -> None:
    ok(target.run("set", f"{target.ns}/a", "1"))
    body = json.loads(ok(target.run("ls", "-o", "json", target.ns)))
    assert body["action"] == "get"
    assert body["node"]["key"] == target.ns and body["node"]["dir"] is True
    (node,) = body["node"]["nodes"]
    assert node["key"] == f"{target.ns}/a" and node["value"] == "1"
    assert node["createdIndex"] == node["modifiedIndex"] > 0


def test_set_json_and_extended_output(target: Target) -> None:
    key = f"{target.ns}/k"
    created = json.loads(ok(target.run("--output", "json", "set", key, "v1", "--ttl", "60")))
    assert created["action"] == "create"
    assert created["node"]["value"] == "v1" and created["node"]["ttl"] == 60
    updated = json.loads(ok(target.run("set", "-o", "json", key, "v2")))
    assert updated["action"] == "set" and updated["node"]["value"] == "v2"
    assert updated["node"]["createdIndex"] == created["node"]["createdIndex"]
    text = ok(target.run("-o", "extended", "get", key))
    assert text.startswith(f"Key: {key}\nCreated-Index: ")
    assert text.endswith("\n\nv2\n")


def test_mk_update_and_compare_and_swap(target: Target) -> None:
    key = f"{target.ns}/k"
    ok(target.run("mk", key, "one"))
    res = target.run("mk", key, "again")
    assert res.exit_code == 4 and f"105: Key already exists ({key})" in res.stderr
    res = target.run("update", f"{target.ns}/nope", "x")
    assert res.exit_code == 4 and "100: Key not found" in res.stderr
    ok(target.run("update", key, "two"))
    res = target.run("set", key, "three", "--swap-with-value", "one")
    assert res.exit_code == 4 and res.stderr.startswith("Error:  101: Compare failed")
    ok(target.run("set", key, "three", "--swap-with-value", "two"))
    index = json.loads(ok(target.run("get", "-o", "json", key)))["node"]["modifiedIndex"]
    res = target.run("set", key, "four", "--swap-with-index", str(index + 100))
    assert res.exit_code == 4 and "101: Compare failed" in res.stderr
    ok(target.run("set", key, "four", "--swap-with-index", str(index)))
    assert ok(target.run("get", key)) == "four\n"


def test_rm_keys_and_directories(target: Target) -> None:
    ns = target.ns
    ok(target.run("set", f"{ns}/a", "1"))
    ok(target.run("set", f"{ns}/d/x", "2"))
    assert ok(target.run("rm", f"{ns}/a")) == ""
    res = target.run("rm", f"{ns}/a")
    assert res.exit_code == 4 and "100: Key not found" in res.stderr
    res = target.run("rm", f"{ns}/d")
    assert res.exit_code == 4 and f"102: Not a file ({ns}/d)" in res.stderr
    assert "--recursive" in res.stderr
    res = target.run("rm", "--dir", f"{ns}/d")
    assert res.exit_code == 4 and "108: Directory not empty" in res.stderr
    ok(target.run("set", f"{ns}/c", "3"))
    res = target.run("rm", f"{ns}/c", "--with-value", "nope")
    assert res.exit_code == 4 and "101: Compare failed" in res.stderr
    ok(target.run("rm", f"{ns}/c", "--with-value", "3"))
    ok(target.run("rm", "-r", f"{ns}/d"))
    res = target.run("ls", ns)
    assert res.exit_code == 4  # the directory went with its last key


def test_flotte_keys_are_read_only(target: Target) -> None:
    for args in (["set", "/flotte/units/x.service", "v"], ["rm", "/flotte/units/x.service"],
                 ["rm", "-r", "/"], ["set", "/", "v"]):
        res = target.run(*args)
        assert res.exit_code == 4, args
        assert "107:" in res.stderr, (args, res.stderr)


def test_mkdir_is_idempotent_and_refuses_a_key(target: Target) -> None:
    ok(target.run("mkdir", f"{target.ns}/empty"))
    ok(target.run("mkdir", f"{target.ns}/empty"))
    ok(target.run("set", f"{target.ns}/file", "v"))
    res = target.run("mkdir", f"{target.ns}/file")
    assert res.exit_code == 4 and "105: Key already exists" in res.stderr


def test_ttl_key_expires(target: Target) -> None:
    key = f"{target.ns}/short"
    ok(target.run("set", key, "v", "--ttl", "1"))
    assert ok(target.run("get", key)) == "v\n"
    took = wait_for(lambda: target.run("get", key).exit_code == 4, timeout=10, step=0.2)
    assert took < 5


def test_export_import_round_trip(target: Target) -> None:
    ns = target.ns
    data = {f"{ns}/a": "1", f"{ns}/d/b": '{"json": true}', f"{ns}/d/e/f": "ünïcode"}
    for k, v in data.items():
        ok(target.run("set", k, v))
    exported = ok(target.run("export", ns))
    assert json.loads(exported) == data
    ok(target.run("rm", "-r", ns))
    res = target.run("import", input=exported)
    assert res.exit_code == 0 and "imported 3 keys" in res.stderr
    assert json.loads(ok(target.run("export", ns))) == data
    ok(target.run("set", f"{ns}/a", "changed"))
    res = target.run("import", "--no-overwrite", "-", input=exported)
    assert res.exit_code == 0 and "skipped 3 existing" in res.stderr
    assert ok(target.run("get", f"{ns}/a")) == "changed\n"


def test_import_reports_failed_keys_and_exits_4(target: Target) -> None:
    res = target.run("import", input=json.dumps({f"{target.ns}/ok": "1",
                                                 "/flotte/units/x": "no"}))
    assert res.exit_code == 4
    assert "107:" in res.stderr and "imported 1 keys, 1 failed" in res.stderr
    assert ok(target.run("get", f"{target.ns}/ok")) == "1\n"


def test_export_of_root_leaves_out_flotte_keys(api: ApiThread) -> None:
    api.put("/flotte/units/x.service", "{}")
    ns = f"/services/t{uuid.uuid4().hex[:10]}"
    api.put(f"{ns}/a", "1")
    res = CliRunner().invoke(kv, ["--endpoint", api.endpoint, "export"])
    assert res.exit_code == 0
    exported = json.loads(res.stdout)
    assert exported[f"{ns}/a"] == "1"
    assert not any(k.startswith("/flotte/") for k in exported)
    assert "left out" in res.stderr


def test_usage_errors_exit_1_like_etcdctl(target: Target) -> None:
    assert target.run("get").exit_code == 1
    assert target.run("frobnicate").exit_code == 1
    assert target.run("set", "k", "v", "--ttl", "-3").exit_code == 1


# -- watch (a real process: it blocks) ----------------------------------------------------------


class Lines:
    """Collects a process's output lines from a thread (readline would block the test)."""

    def __init__(self, proc: Any) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: Any) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))


def _watch(target: Target, *args: str) -> Any:
    return popen(flotte_cmd("flotte.cli.kv", "kv", *target.args, "watch", *args))


def test_watch_prints_the_next_change_and_exits(target: Target) -> None:
    key = f"{target.ns}/w"
    proc = _watch(target, key)
    try:
        deadline = time.monotonic() + 45  # generous: a loaded CI box
        n = 0
        while proc.poll() is None and time.monotonic() < deadline:
            n += 1
            ok(target.run("set", key, "changed"))  # until the watcher has started
            time.sleep(0.3)
        assert proc.wait(5) == 0
        assert proc.stdout is not None
        assert proc.stdout.read().splitlines() == ["changed"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watch_recursive_forever_then_sigint_exits_0(target: Target) -> None:
    ns = target.ns
    proc = _watch(target, "--forever", "--recursive", ns)
    lines = Lines(proc)
    try:
        i = 0
        deadline = time.monotonic() + 45  # generous: a loaded CI box
        while not any(line.startswith("[") for line in lines.lines):
            assert time.monotonic() < deadline, lines.lines
            i += 1
            ok(target.run("set", f"{ns}/a", f"v{i}"))
            time.sleep(0.3)
        ok(target.run("set", f"{ns}/sub/b", "bee"))
        wait_for(lambda: f"[create] {ns}/sub/b" in lines.lines, timeout=30)
        ok(target.run("rm", f"{ns}/sub/b"))
        wait_for(lambda: f"[delete] {ns}/sub/b" in lines.lines, timeout=30)
        # a sibling directory sharing the prefix text is not under ns
        ok(target.run("set", f"{ns}x/other", "no"))
        ok(target.run("set", f"{ns}/last", "z"))
        wait_for(lambda: f"[create] {ns}/last" in lines.lines, timeout=30)
        assert not any(f"{ns}x/" in line for line in lines.lines)
        idx = lines.lines.index(f"[create] {ns}/sub/b")
        assert lines.lines[idx + 1] == "bee"
        idx = lines.lines.index(f"[delete] {ns}/sub/b")
        assert lines.lines[idx + 1] == "PrevNode.Value: bee"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watch_after_index_replays_history_on_etcd(etcd: Any) -> None:
    t = Target("etcd", ["--registry", etcd.url], f"/services/t{uuid.uuid4().hex[:10]}")
    first = json.loads(ok(t.run("set", "-o", "json", f"{t.ns}/k", "one")))
    ok(t.run("set", f"{t.ns}/k", "two"))
    index = first["node"]["modifiedIndex"]
    res = t.run("watch", "--after-index", str(index), f"{t.ns}/k")
    assert res.exit_code == 0 and res.stdout == "two\n"


def test_watch_after_index_over_the_api_says_why_not(api: ApiThread) -> None:
    res = CliRunner().invoke(kv, ["--endpoint", api.endpoint, "watch", "--after-index", "3",
                                  "/services/x"])
    assert res.exit_code == 1 and "needs --registry" in res.stderr


# -- reaching the API: default socket, token, unreachable ----------------------------------------


def test_default_endpoint_is_the_state_dir_socket(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    short = Path(f"/tmp/flkv{uuid.uuid4().hex[:8]}")
    state = short / "state"
    state.mkdir(parents=True)
    server = ApiThread(socket_dir=str(state))
    try:
        monkeypatch.setattr("flotte.paths.default_state_dir", lambda **kw: state)
        for var in ("FLOTTE_ENDPOINT", "FLEETCTL_ENDPOINT", "FLOTTE_TOKEN"):
            monkeypatch.delenv(var, raising=False)
        server.put("/services/default/k", "via the default socket")
        res = CliRunner().invoke(kv, ["get", "/services/default/k"])
        assert res.exit_code == 0, res.output
        assert res.stdout == "via the default socket\n"
    finally:
        server.close()
        shutil.rmtree(short, ignore_errors=True)


def test_tcp_endpoint_needs_the_token(api: ApiThread, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    async def go() -> str:
        app = make_app(api.registry, token="s3cret")
        served = await serve(app, ["http://127.0.0.1:0"], shutdown_timeout=0.5)
        api_extra.append(served)
        return served.urls[0]

    api_extra: list[Any] = []
    url = api.call(go())
    try:
        monkeypatch.setattr("flotte.paths.default_state_dir", lambda **kw: tmp_path)
        monkeypatch.delenv("FLOTTE_TOKEN", raising=False)
        api.put("/services/tok/k", "secret value")
        res = CliRunner().invoke(kv, ["--endpoint", url, "get", "/services/tok/k"])
        assert res.exit_code == 3, res.output
        assert res.stderr.startswith("Error:  ")
        res = CliRunner().invoke(kv, ["--endpoint", url, "--token", "s3cret", "get",
                                      "/services/tok/k"])
        assert res.stdout == "secret value\n"
        res = CliRunner().invoke(kv, ["get", "--endpoint", url, "/services/tok/k"],
                                 env={"FLOTTE_TOKEN": "s3cret"})
        assert res.stdout == "secret value\n"
        (tmp_path / "api-token").write_text("s3cret\n")
        res = CliRunner().invoke(kv, ["--endpoint", url, "get", "/services/tok/k"])
        assert res.stdout == "secret value\n", res.output
    finally:
        for served in api_extra:
            api.call(served.close())


def test_unreachable_api_and_registry_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(kv, ["--endpoint", f"unix://{tmp_path}/none.sock", "get", "/x"])
    assert res.exit_code == 2
    assert res.stderr.startswith("Error:  ") and "flotte up" in res.stderr
    res = CliRunner().invoke(kv, ["--registry", "etcd://127.0.0.1:1", "get", "/x"])
    assert res.exit_code == 2 and "Error:  cannot reach the registry" in res.stderr
    res = CliRunner().invoke(kv, ["--registry", "bogus://x", "get", "/x"])
    assert res.exit_code == 1 and "scheme" in res.stderr


def test_the_two_backends_satisfy_the_protocol(api: ApiThread) -> None:
    assert isinstance(ApiKV.open(api.endpoint), KVBackend)
    assert isinstance(RegistryKV("memory://x"), KVBackend)


def test_in_a_subprocess_the_exit_code_reaches_the_shell(api: ApiThread) -> None:
    proc = popen(flotte_cmd("flotte.cli.kv", "kv", "--endpoint", api.endpoint, "get",
                            "/services/none/at/all"))
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 4
    assert out.strip() == "Error:  100: Key not found (/services/none/at/all)"

