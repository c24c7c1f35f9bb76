"""Processing one resource: the pure decisions, then the real thing in a temp directory."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from discovery.confd_support import (
    SEED_TEMPLATE,
    DictBackend,
    read,
    stage_files,
    write_resource,
)
from flotte.discovery.confd import sync
from flotte.discovery.confd.resource import TemplateResource, load_resource
from flotte.discovery.confd.runner import Confd
from flotte.discovery.confd.settings import Settings
from flotte.discovery.confd.sync import (
    Actions,
    FileState,
    Outcome,
    Processor,
    decide,
    differences,
    wanted_mode,
)

# -- pure decisions ---------------------------------------------------------------------


def st(content: bytes = b"x", uid: int = 0, gid: int = 0, mode: int = 0o644) -> FileState:
    return FileState(content, uid, gid, mode)


def test_in_sync_when_everything_matches() -> None:
    assert differences("/d", st(), st()) == []


def test_each_difference_is_reported_in_confds_words() -> None:
    assert differences("/d", None, st()) == ["/d does not exist"]
    assert differences("/d", st(b"a", 1, 2, 0o600), st(b"b", 0, 0, 0o644)) == [
        "/d has UID 1 should be 0",
        "/d has GID 2 should be 0",
        "/d has mode rw------- (0600) should be rw-r--r-- (0644)",
        "/d has md5sum 0cc175b9c0f1b6a831c399e269772661 should be "
        "92eb5ffee6ae2fec3ad71c777531578f",
    ]
    assert differences("/d", st(mode=0o4755), st(mode=0o755)) != []


@pytest.mark.parametrize(("changed", "noop", "sync_only", "pending", "want"), [
    # changed, normal: check, write, reload
    (True, False, False, False, Actions(True, True, True)),
    # unchanged: nothing at all...
    (False, False, False, False, Actions(False, False, False)),
    # ...unless a reload is still owed from a failed one
    (False, False, False, True, Actions(False, False, True)),
    # noop: check only, never write or reload
    (True, True, False, False, Actions(True, False, False)),
    (False, True, False, True, Actions(False, False, False)),
    # sync-only: write only
    (True, False, True, False, Actions(False, True, False)),
    (False, False, True, True, Actions(False, False, False)),
])
def test_decide(changed: bool, noop: bool, sync_only: bool, pending: bool,
                want: Actions) -> None:
    got = decide(changed, noop=noop, sync_only=sync_only, has_check=True, has_reload=True,
                 reload_pending=pending)
    assert got == want


def test_decide_without_commands() -> None:
    assert decide(True, noop=False, sync_only=False, has_check=False,
                  has_reload=False) == Actions(False, True, False)
    assert decide(False, noop=False, sync_only=False, has_check=False, has_reload=False,
                  reload_pending=True) == Actions(False, False, False)


def test_wanted_mode() -> None:
    assert wanted_mode(0o600, st(mode=0o755)) == 0o600
    assert wanted_mode(None, st(mode=0o755)) == 0o755
    assert wanted_mode(None, None) == 0o644


# -- processing on disk -----------------------------------------------------------------

VALUES = {"/services/apache/10.0.0.1": "10.0.0.1:80", "/services/apache/10.0.0.2": "10.0.0.2:80"}


def resource(tmp_path: Path, template: str = SEED_TEMPLATE, **fields: object
             ) -> TemplateResource:
    fields.setdefault("dest", str(tmp_path / "out" / "app.conf"))
    fields.setdefault("keys", ["/services/apache"])
    (tmp_path / "out").mkdir(exist_ok=True)
    path = write_resource(tmp_path / "confd", "app", template, **fields)
    return load_resource(path, tmp_path / "confd")


async def test_first_render_creates_dest_then_stays_in_sync(tmp_path: Path) -> None:
    log = tmp_path / "log"
    res = resource(tmp_path, check_cmd=f"echo check {{{{.src}}}} >> {log}",
                   reload_cmd=f"echo reload >> {log}")
    proc = Processor()
    first = await proc.process(res, VALUES)
    assert first.outcome is Outcome.UPDATED and first.ok
    assert first.changes == [f"{res.dest} does not exist"]
    assert first.reload == res.reload_cmd
    await proc.reload([first])
    text = read(res.dest)
    assert "server 10.0.0.1:80;" in text and "server 10.0.0.2:80;" in text
    assert stat.S_IMODE(res.dest.stat().st_mode) == 0o644
    checked, reloaded = read(log).splitlines()
    stage = Path(checked.split()[1])
    assert stage.parent == res.dest.parent and stage.name.startswith(".app.conf")
    assert reloaded == "reload"
    assert stage_files(res.dest.parent) == []
    again = await proc.process(res, VALUES)
    assert again.outcome is Outcome.IN_SYNC and again.reload is None and again.changes == []
    assert len(read(log).splitlines()) == 2  # no check, no reload when nothing changed


async def test_change_of_keys_rewrites_and_reloads(tmp_path: Path) -> None:
    res = resource(tmp_path, reload_cmd="true")
    proc = Processor()
    await proc.process(res, VALUES)
    inode = res.dest.stat().st_ino
    r = await proc.process(res, {"/services/apache/10.0.0.3": "10.0.0.3:80"})
    assert r.outcome is Outcome.UPDATED and r.reload == "true"
    assert "10.0.0.3:80" in read(res.dest) and "10.0.0.1" not in read(res.dest)
    assert res.dest.stat().st_ino != inode  # renamed into place, not rewritten


async def test_mode_change_alone_is_a_change(tmp_path: Path) -> None:
    res = resource(tmp_path)
    await Processor().process(res, VALUES)
    os.chmod(res.dest, 0o600)
    res2 = resource(tmp_path, mode="0644")
    r = await Processor().process(res2, VALUES)
    assert r.outcome is Outcome.UPDATED
    assert r.changes == [f"{res.dest} has mode rw------- (0600) should be rw-r--r-- (0644)"]
    assert stat.S_IMODE(res.dest.stat().st_mode) == 0o644


async def test_existing_mode_is_kept_without_mode_key(tmp_path: Path) -> None:
    res = resource(tmp_path)
    res.dest.write_text("old\n")
    os.chmod(res.dest, 0o640)
    await Processor().process(res, VALUES)
    assert stat.S_IMODE(res.dest.stat().st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
async def test_uid_gid_applied_and_compared(tmp_path: Path) -> None:
    res = resource(tmp_path, uid=65534, gid=65534, mode="0600")
    r = await Processor().process(res, VALUES)
    assert r.outcome is Outcome.UPDATED
    info = res.dest.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)
    os.chown(res.dest, 0, 0)
    r = await Processor().process(res, VALUES)
    assert r.changes == [f"{res.dest} has UID 0 should be 65534",
                         f"{res.dest} has GID 0 should be 65534"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may chown to anyone")
async def test_ownership_we_cannot_set_does_not_rewrite_forever(tmp_path: Path) -> None:
    res = resource(tmp_path, uid=0, gid=0)
    await Processor().process(res, VALUES)
    r = await Processor().process(res, VALUES)
    assert r.outcome is Outcome.IN_SYNC
    assert stage_files(res.dest.parent) == []


async def test_failed_check_keeps_old_dest(tmp_path: Path) -> None:
    res = resource(tmp_path, check_cmd="echo bad config in {{.src}}; exit 3",
                   reload_cmd="touch reloaded")
    res.dest.write_text("old\n")
    r = await Processor().process(res, VALUES)
    assert r.outcome is Outcome.FAILED and r.reload is None
    assert r.error is not None
    assert r.error.startswith("conf.d/app.toml: Config check failed: exit status 3 (echo bad "
                              f"config in {res.dest.parent}/.app.conf")
    assert f"{res.dest} left unchanged:\nbad config in " in r.error
    assert read(res.dest) == "old\n"
    assert stage_files(res.dest.parent) == []


async def test_keep_stage_file_keeps_the_rejected_stage(tmp_path: Path) -> None:
    res = resource(tmp_path, check_cmd="false")
    r = await Processor(keep_stage_file=True).process(res, VALUES)
    assert r.outcome is Outcome.FAILED
    (kept,) = stage_files(res.dest.parent)
    assert "server 10.0.0.1:80;" in read(res.dest.parent / kept)


async def test_template_parse_error_names_resource_and_line(tmp_path: Path) -> None:
    res = resource(tmp_path, template="upstream {\n  {{ range getvs \"/x/*\" }}\n}\n")
    res.dest.write_text("old\n")
    r = await Processor().process(res, VALUES)
    assert r.outcome is Outcome.FAILED
    assert r.error == "conf.d/app.toml: templates/app.tmpl:4:1: unexpected EOF"
    assert read(res.dest) == "old\n"


async def test_template_syntax_error_column(tmp_path: Path) -> None:
    res = resource(tmp_path, template="a\nb {{ nosuchfunc }}\n")
    r = await Processor().process(res, VALUES)
    assert r.error == ('conf.d/app.toml: templates/app.tmpl:2:6: function "nosuchfunc" '
                       "not defined")


async def test_template_exec_error_names_line_col_and_call(tmp_path: Path) -> None:
    res = resource(tmp_path, template='ok\nhost {{ getv "/services/apache/none" }}\n')
    res.dest.write_text("old\n")
    r = await Processor().process(res, VALUES)
    assert r.error == ('conf.d/app.toml: templates/app.tmpl:2:9: at <getv '
                       '"/services/apache/none">: error calling getv: key does not exist: '
                       "/services/apache/none")
    assert read(res.dest) == "old\n"
    assert stage_files(res.dest.parent) == []


async def test_missing_template(tmp_path: Path) -> None:
    res = resource(tmp_path)
    res.src.unlink()
    r = await Processor().process(res, VALUES)
    assert r.error == "conf.d/app.toml: Missing template: templates/app.tmpl"


async def test_template_edits_are_picked_up(tmp_path: Path) -> None:
    res = resource(tmp_path, template="one\n")
    proc = Processor()
    await proc.process(res, VALUES)
    res.src.write_text("two, longer\n")
    await proc.process(res, VALUES)
    assert read(res.dest) == "two, longer\n"


async def test_missing_dest_directory(tmp_path: Path) -> None:
    res = resource(tmp_path, dest=str(tmp_path / "nope" / "app.conf"))
    r = await Processor().process(res, VALUES)
    assert r.error == (f"conf.d/app.toml: cannot write {tmp_path}/nope/app.conf: directory "
                       f"{tmp_path}/nope does not exist")


async def test_noop_checks_but_never_writes_or_reloads(tmp_path: Path) -> None:
    log = tmp_path / "log"
    res = resource(tmp_path, check_cmd=f"echo check >> {log}", reload_cmd=f"echo r >> {log}")
    res.dest.write_text("old\n")
    r = await Processor(noop=True).process(res, VALUES)
    assert r.outcome is Outcome.NOOP and r.reload is None
    assert read(res.dest) == "old\n"
    assert read(log) == "check\n"
    assert stage_files(res.dest.parent) == []
    failing = resource(tmp_path, check_cmd="false")
    assert (await Processor(noop=True).process(failing, VALUES)).outcome is Outcome.FAILED


async def test_sync_only_writes_without_commands(tmp_path: Path) -> None:
    res = resource(tmp_path, check_cmd="false", reload_cmd="false")
    r = await Processor(sync_only=True).process(res, VALUES)
    assert r.outcome is Outcome.UPDATED and r.reload is None
    assert "10.0.0.1:80" in read(res.dest)


async def test_check_cmd_is_a_plain_template(tmp_path: Path) -> None:
    res = resource(tmp_path, check_cmd='test -f {{.src}} && test "{{getv}}" = x')
    r = await Processor().process(res, VALUES)
    assert r.error is not None and "check_cmd is not a valid template" in r.error
    assert 'function "getv" not defined' in r.error


async def test_reload_cmd_is_not_templated(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    res = resource(tmp_path, reload_cmd=f"echo '{{{{.src}}}}' > {out}")
    proc = Processor()
    r = await proc.process(res, VALUES)
    await proc.reload([r])
    assert read(out) == "{{.src}}\n"


async def test_failed_reload_leaves_new_dest_and_is_flagged(tmp_path: Path) -> None:
    res = resource(tmp_path, reload_cmd="echo nginx is down >&2; exit 1")
    proc = Processor()
    r = await proc.process(res, VALUES)
    await proc.reload([r])
    assert r.reload_failed and not r.ok
    assert r.error == "reload_cmd failed: exit status 1"
    assert "10.0.0.1:80" in read(res.dest)


async def test_reload_runs_once_per_distinct_command(tmp_path: Path) -> None:
    log = tmp_path / "log"
    proc = Processor()
    results = []
    for name in ("a", "b"):
        path = write_resource(tmp_path / "confd", name, f"{name} {{{{getv \"/k\"}}}}\n",
                              dest=str(tmp_path / f"{name}.conf"), keys=["/k"],
                              reload_cmd=f"echo nginx >> {log}")
        results.append(await proc.process(load_resource(path, tmp_path / "confd"),
                                          {"/k": "v"}))
    await proc.reload(results)
    assert read(log) == "nginx\n"


async def test_command_timeout_kills_the_group(tmp_path: Path) -> None:
    res = resource(tmp_path, check_cmd="sleep 30 & sleep 30")
    r = await Processor(cmd_timeout=0.2).process(res, VALUES)
    assert r.error is not None and "Config check failed: timed out" in r.error


async def test_daemon_started_by_reload_does_not_block(tmp_path: Path) -> None:
    res = resource(tmp_path, reload_cmd="sleep 30 &")
    proc = Processor(cmd_timeout=10)
    r = await proc.process(res, VALUES)
    await proc.reload([r])
    assert r.ok and r.finished_at - r.rendered_at < 5


def test_replace_falls_back_to_in_place_write_on_ebusy(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "bound.conf"
    dest.write_text("old")
    stage, state = sync.write_stage(dest, FileState(b"new", os.geteuid(), os.getegid(), 0o600))

    def busy(src: object, dst: object) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(sync.os, "replace", busy)
    inode = dest.stat().st_ino
    sync.replace(stage, dest, state)
    assert dest.read_bytes() == b"new" and dest.stat().st_ino == inode
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert not stage.exists()


# -- passes: pending reloads, exit codes ------------------------------------------------


async def test_failed_reload_is_retried_on_the_next_pass(tmp_path: Path) -> None:
    flag = tmp_path / "nginx-up"
    log = tmp_path / "log"
    write_resource(tmp_path / "confd", "app", SEED_TEMPLATE, dest=str(tmp_path / "app.conf"),
                   keys=["/services/apache"],
                   reload_cmd=f"test -e {flag} && echo reloaded >> {log}")
    confd = Confd(Settings(confdir=str(tmp_path / "confd")), DictBackend(VALUES))
    (first,) = await confd.process(confd.load())
    assert first.reload_failed and confd.pending_reloads == {first.resource.path}
    (second,) = await confd.process(confd.load())
    assert second.outcome is Outcome.IN_SYNC and second.reload_failed  # still owed
    flag.touch()
    (third,) = await confd.process(confd.load())
    assert third.outcome is Outcome.IN_SYNC and third.ok
    assert read(log) == "reloaded\n" and confd.pending_reloads == set()
    (fourth,) = await confd.process(confd.load())
    assert fourth.reload is None and read(log) == "reloaded\n"


async def test_onetime_exit_codes(tmp_path: Path) -> None:
    confdir = tmp_path / "confd"
    write_resource(confdir, "good", "ok {{getv \"/k\"}}\n", dest=str(tmp_path / "good"),
                   keys=["/k"])
    settings = Settings(confdir=str(confdir), onetime=True)
    assert await Confd(settings, DictBackend({"/k": "v"})).run() == 0
    assert read(tmp_path / "good") == "ok v\n"
    # a failing resource: exit 1, the good one is still processed
    write_resource(confdir, "bad", "{{getv \"/missing\"}}", dest=str(tmp_path / "bad"))
    (tmp_path / "good").unlink()
    assert await Confd(settings, DictBackend({"/k": "v"})).run() == 1
    assert read(tmp_path / "good") == "ok v\n"
    # a resource file that does not load: exit 1, the others still processed
    (confdir / "conf.d" / "bad.toml").write_text("[template]\nsrc = 1\n")
    (tmp_path / "good").unlink()
    assert await Confd(settings, DictBackend({"/k": "v"})).run() == 1
    assert read(tmp_path / "good") == "ok v\n"
    # backend down
    down = DictBackend()
    down.fail = "etcd is down"
    (confdir / "conf.d" / "bad.toml").unlink()
    assert await Confd(settings, down).run() == 1


async def test_onetime_with_nothing_to_do(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    assert await Confd(Settings(confdir=str(tmp_path), onetime=True), DictBackend()).run() == 0
    assert await Confd(Settings(confdir=str(tmp_path / "x"), onetime=True),
                       DictBackend()).run() == 1
