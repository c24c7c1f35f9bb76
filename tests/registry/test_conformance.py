"""One conformance suite for every registry backend (memory, sqlite, real etcd).

What is checked is etcd v3's semantics as flotte relies on them: revisions,
record fields, ranges, deletes, compare-and-swap, leases and their expiry as
seen by a watch, watch replay and resume, compaction, election with fencing,
and the same clear errors for bad input everywhere.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from flotte import registry as R
from flotte.registry.election import Election, NotLeader

pytestmark = pytest.mark.timeout(90)


async def collect(watch: R.Watch, n: int, timeout: float = 10.0) -> list[R.Event]:
    out: list[R.Event] = []

    async def run() -> None:
        async for ev in watch:
            out.append(ev)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_put_get_records(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        k = ns + "a"
        assert await reg.get(k) is None
        r1 = await reg.put(k, b"one")
        r2 = await reg.put(k, b"two")
        assert r2 == r1 + 1
        kv = await reg.get(k)
        assert kv is not None
        assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) \
            == (k, b"two", r1, r2, 2, 0)
        assert reg.revision >= r2
        # a deleted key starts again at version 1
        assert await reg.delete(k) == 1
        r3 = await reg.put(k, b"three")
        kv = await reg.get(k)
        assert kv is not None and kv.version == 1 and kv.create_revision == r3
        assert await reg.put(ns + "empty", b"") > r3
        assert (await reg.get(ns + "empty")).value == b""  # type: ignore[union-attr]


async def test_range_and_limit(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        for name in ["b", "a", "c/x", "c/y", "d"]:
            await reg.put(ns + name, name.encode())
        await reg.put(ns[:-1] + "-sibling", b"not under the prefix")
        keys = [kv.key for kv in await reg.range(ns)]
        assert keys == [ns + k for k in ["a", "b", "c/x", "c/y", "d"]]
        assert [kv.key for kv in await reg.range(ns + "c/")] == [ns + "c/x", ns + "c/y"]
        assert [kv.key for kv in await reg.range(ns, limit=2)] == [ns + "a", ns + "b"]
        assert await reg.range(ns + "zzz") == []


async def test_delete_prefix_counts_and_one_revision(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        for i in range(5):
            await reg.put(f"{ns}d/{i}", b"x")
        await reg.put(ns + "keep", b"x")
        before = reg.revision
        w = reg.watch(ns + "d/")
        assert await reg.delete(ns + "d/", prefix=True) == 5
        assert await reg.delete(ns + "d/", prefix=True) == 0
        assert await reg.delete(ns + "missing") == 0
        events = await collect(w, 5)
        await w.close()
        assert {e.type for e in events} == {R.EventType.DELETE}
        assert len({e.revision for e in events}) == 1  # one delete, one revision
        assert events[0].revision == before + 1
        assert sorted(e.prev_kv.value for e in events if e.prev_kv) == [b"x"] * 5
        assert [kv.key for kv in await reg.range(ns)] == [ns + "keep"]


async def test_txn_compare_and_swap(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        k = ns + "cas"
        # create-if-absent
        t = await reg.txn([R.create_revision(k) == 0], [R.Put(k, b"v1")], [R.Get(k)])
        assert t.succeeded and t.responses == [t.revision]
        t2 = await reg.txn([R.create_revision(k) == 0], [R.Put(k, b"again")], [R.Get(k)])
        assert not t2.succeeded and t2.responses[0].value == b"v1"
        kv = await reg.get(k)
        assert kv is not None
        # mod_revision CAS: fresh succeeds, stale fails
        ok = await reg.txn([R.mod_revision(k) == kv.mod_revision], [R.Put(k, b"v2")])
        assert ok.succeeded
        stale = await reg.txn([R.mod_revision(k) == kv.mod_revision], [R.Put(k, b"v3")],
                              [R.Get(k)])
        assert not stale.succeeded and stale.responses[0].value == b"v2"
        # value, version, comparisons < >
        assert (await reg.txn([R.value(k) == b"v2"], [])).succeeded
        assert not (await reg.txn([R.value(k) != b"v2"], [])).succeeded
        assert (await reg.txn([R.version(k) == 2], [])).succeeded
        assert (await reg.txn([R.version(k) > 1, R.mod_revision(k) < 10**9], [])).succeeded
        assert not (await reg.txn([R.value(ns + "absent") == b""], [])).succeeded
        # several ops, all responses, atomically one revision
        await reg.put(ns + "m3", b"3")
        t = await reg.txn([], [R.Put(ns + "m1", b"1"), R.Put(ns + "m2", b"2"), R.Get(ns + "m3"),
                               R.Range(ns + "m"), R.Delete(ns + "m3")])
        assert t.succeeded
        put1, put2, got, rng, deleted = t.responses
        assert put1 == put2 == t.revision
        assert got.value == b"3"
        # reads in a txn see its earlier writes (etcd reads at the txn's revision)
        assert [x.key for x in rng] == [ns + "m1", ns + "m2", ns + "m3"]
        assert deleted == 1
        # a read-only txn does not create a revision
        rev = reg.revision
        await reg.txn([], [R.Get(k)])
        assert (await reg.txn([], [R.Get(k)])).revision == rev


async def test_nested_txn(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        await reg.put(ns + "gate", b"open")
        t = await reg.txn([R.value(ns + "gate") == b"open"],
                          [R.Txn((R.version(ns + "x") == 0,), (R.Put(ns + "x", b"1"),), ())])
        assert t.succeeded and t.responses[0].succeeded
        assert (await reg.get(ns + "x")).value == b"1"  # type: ignore[union-attr]


async def test_lease_expiry_is_seen_by_a_watch(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        lease = await reg.grant(2)
        assert lease.ttl >= 2 and lease.id
        await reg.put(ns + "eph", b"here", lease=lease)
        await reg.put(ns + "eph2", b"here", lease=lease.id)
        kv = await reg.get(ns + "eph")
        assert kv is not None and kv.lease == lease.id
        w = reg.watch(ns)
        start = time.monotonic()
        assert await lease.keepalive() >= 1
        events = await collect(w, 2, timeout=8)
        elapsed = time.monotonic() - start
        await w.close()
        assert [e.type for e in events] == [R.EventType.DELETE] * 2
        assert events[0].revision == events[1].revision
        assert 1.5 <= elapsed <= 4.5, elapsed
        assert await reg.get(ns + "eph") is None
        with pytest.raises(R.LeaseNotFound):
            await lease.keepalive()
        with pytest.raises(R.LeaseNotFound):
            await reg.put(ns + "late", b"x", lease=lease)


async def test_keepalive_keeps_and_revoke_deletes(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        lease = await reg.grant(2)
        await reg.put(ns + "k", b"v", lease=lease)
        async with lease:
            await asyncio.sleep(3.2)  # longer than the TTL: kept alive in the background
            assert await reg.get(ns + "k") is not None
            assert not lease.lost.is_set()
        # leaving the block revoked the lease: the key is gone at once
        assert await reg.get(ns + "k") is None
        lease2 = await reg.grant(30)
        await reg.put(ns + "r", b"v", lease=lease2)
        await lease2.revoke()
        assert await reg.get(ns + "r") is None


async def test_watch_replays_history_in_order(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        first = await reg.put(ns + "a", b"1")
        await reg.put(ns + "b", b"2")
        await reg.put(ns + "a", b"3")
        await reg.delete(ns + "b")
        await reg.put(ns[:-1] + "x/outside", b"no")
        w = reg.watch(ns, start_revision=first)
        events = await collect(w, 4)
        await reg.put(ns + "c", b"live")
        events += await collect(w, 1)
        await w.close()
        assert [(e.type.value, e.kv.key[len(ns):], e.kv.value) for e in events] == [
            ("put", "a", b"1"), ("put", "b", b"2"), ("put", "a", b"3"), ("delete", "b", b""),
            ("put", "c", b"live")]
        revs = [e.revision for e in events]
        assert revs == sorted(revs) and len(set(revs)) == 5
        assert events[2].prev_kv is not None and events[2].prev_kv.value == b"1"
        assert events[3].prev_kv is not None and events[3].prev_kv.value == b"2"


async def test_watch_single_key_and_watch_then_write(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        await reg.put(ns + "k", b"0")
        w = reg.watch(ns + "k", prefix=False)
        # written after watch() but before iterating: must not be missed
        await reg.put(ns + "kk", b"other key")
        await reg.put(ns + "k", b"1")
        (ev,) = await collect(w, 1)
        await w.close()
        assert ev.kv.key == ns + "k" and ev.kv.value == b"1"


async def test_watch_resume_from_last_revision(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        start = reg.revision + 1
        for i in range(10):
            await reg.put(f"{ns}{i}", str(i).encode())
        w = reg.watch(ns, start_revision=start)
        got = await collect(w, 4)
        await w.close()
        # a new watch from the last seen revision + 1 continues exactly
        w2 = reg.watch(ns, start_revision=got[-1].revision + 1)
        got += await collect(w2, 6)
        await w2.close()
        assert [e.kv.value for e in got] == [str(i).encode() for i in range(10)]


async def test_watch_from_compacted_revision_fails_clearly(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        r1 = await reg.put(ns + "a", b"1")
        r2 = await reg.put(ns + "a", b"2")
        await reg.compact(r2)  # keeps r2 itself, as etcd does
        w = reg.watch(ns, start_revision=r1)
        with pytest.raises(R.CompactedError) as exc:
            await collect(w, 1, timeout=5)
        assert "compacted" in str(exc.value) and exc.value.requested == r1
        w2 = reg.watch(ns, start_revision=r2)
        await reg.put(ns + "a", b"3")
        got = await collect(w2, 2)
        await w2.close()
        assert [e.kv.value for e in got] == [b"2", b"3"]


async def test_concurrent_writers_get_distinct_revisions(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        revs = await asyncio.gather(*(reg.put(f"{ns}{i}", b"x") for i in range(200)))
        assert len(set(revs)) == 200
        assert len(await reg.range(ns)) == 200


@pytest.mark.parametrize("bad", [
    lambda reg, ns: reg.put("", b"x"),
    lambda reg, ns: reg.put(ns + "k", "text"),
    lambda reg, ns: reg.put(ns + "k", 42),
    lambda reg, ns: reg.put(ns + "k", b"x" * (R.MAX_VALUE_BYTES + 1)),
    lambda reg, ns: reg.get(""),
    lambda reg, ns: reg.get(None),
    lambda reg, ns: reg.range(ns, limit=-1),
    lambda reg, ns: reg.grant(0),
    lambda reg, ns: reg.grant("ten"),
    lambda reg, ns: reg.txn(["not a compare"], []),
    lambda reg, ns: reg.txn([], ["not an op"]),
])
async def test_bad_input_is_a_clear_error(registry_url: str, ns: str, bad) -> None:  # type: ignore[no-untyped-def]
    async with R.connect(registry_url) as reg:
        with pytest.raises(R.InvalidRequest) as exc:
            await bad(reg, ns)
        assert str(exc.value)
        assert await reg.range(ns) == []  # nothing was written


async def test_unknown_url_scheme() -> None:
    for url in ["redis://x", "registry.db", "", "sqlite://"]:
        with pytest.raises(R.UnknownURL) as exc:
            async with R.connect(url):
                pass
        assert "memory://" in str(exc.value) or "sqlite:///" in str(exc.value)


async def test_election_three_candidates_leader_killed(registry_url: str, ns: str) -> None:
    """Three candidates; the leader dies without resigning; a new leader follows within
    the lease TTL (+ the backend's expiry granularity: etcd checks every 500 ms), and a
    write fenced by the old leader's term is refused afterwards."""
    ttl = 2
    key = ns + "leader"
    regs = [await R.connect(registry_url) for _ in range(3)]
    try:
        elections = [Election(r, key, ttl=ttl) for r in regs]
        tasks = [asyncio.create_task(e.campaign(f"c{i}".encode()))
                 for i, e in enumerate(elections)]
        done, pending = await asyncio.wait(tasks, timeout=10,
                                           return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1
        first = done.pop().result()
        winner = tasks.index(next(t for t in tasks if t.done()))
        holder = await regs[(winner + 1) % 3].get(key)
        assert holder is not None and holder.value == f"c{winner}".encode()
        assert await first.put(ns + "decision", b"by first") > 0
        # observe sees the current leader
        obs = elections[(winner + 1) % 3].observe()
        assert (await obs.__anext__()).value == f"c{winner}".encode()  # type: ignore[union-attr]

        # kill the leader: its keep-alive stops, it never resigns
        killed_at = time.monotonic()
        await first.lease.stop_keepalive()
        done2, _ = await asyncio.wait(pending, timeout=ttl + 5,
                                      return_when=asyncio.FIRST_COMPLETED)
        took = time.monotonic() - killed_at
        assert len(done2) == 1, "no new leader"
        second = done2.pop().result()
        assert second.term > first.term
        assert took <= ttl + 0.75, f"new leader after {took:.2f}s (ttl {ttl}s)"
        assert await second.put(ns + "decision", b"by second") > 0
        with pytest.raises(NotLeader):
            await first.put(ns + "decision", b"stale leader")
        assert (await regs[0].get(ns + "decision")).value == b"by second"  # type: ignore[union-attr]
        # the observer saw the vacancy and the new leader
        seen = []
        async for kv in obs:
            seen.append(kv)
            if kv is not None:
                break
        assert seen[-1] is not None and seen[-1].create_revision == second.term
        await obs.aclose()
        # resign hands over to the last candidate
        third_task = next(t for t in tasks if t is not tasks[winner]
                          and (not t.done() or t.result() is not second))
        await second.resign()
        third = await asyncio.wait_for(third_task, 5)
        assert third.term > second.term
        await third.resign()
        assert await regs[0].get(key) is None
    finally:
        for t in tasks:
            t.cancel()
        for r in regs:
            await r.close()


async def test_failed_txn_changes_nothing(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        await reg.put(ns + "a", b"before")
        rev = reg.revision
        with pytest.raises(R.LeaseNotFound):
            await reg.txn([], [R.Put(ns + "a", b"after"), R.Put(ns + "b", b"x", lease=12345)])
        assert (await reg.get(ns + "a")).value == b"before"  # type: ignore[union-attr]
        assert await reg.get(ns + "b") is None
        # concurrent good writes around the failed one are unaffected
        results = await asyncio.gather(
            reg.put(ns + "c", b"1"),
            reg.txn([], [R.Put(ns + "d", b"x", lease=12345)]),
            reg.put(ns + "e", b"2"), return_exceptions=True)
        assert isinstance(results[1], R.LeaseNotFound)
        assert results[0] > rev and results[2] > rev and results[0] != results[2]
        assert [kv.key for kv in await reg.range(ns)] == [ns + "a", ns + "c", ns + "e"]


async def test_txn_writing_a_key_twice_is_refused(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        for ops in ([R.Put(ns + "a", b"1"), R.Put(ns + "a", b"2")],
                    [R.Put(ns + "a", b"1"), R.Delete(ns + "a")],
                    [R.Delete(ns, prefix=True), R.Put(ns + "a", b"1")]):
            with pytest.raises(R.InvalidRequest):
                await reg.txn([], ops)
        assert await reg.range(ns) == []


async def test_sibling_nested_txns_may_not_write_one_key(registry_url: str, ns: str) -> None:
    """etcd's checkIntervals across nested txns (a unit moving in one engine write)."""
    k = ns + "k"
    async with R.connect(registry_url) as reg:
        for ops in ([R.Txn((), (R.Put(k, b"1"),)), R.Txn((), (R.Put(k, b"2"),))],
                    [R.Txn((), (R.Delete(k),)), R.Txn((), (R.Put(k, b"2"),))],
                    [R.Txn((), (R.Put(k, b"1"),)), R.Put(k, b"2")]):
            with pytest.raises(R.InvalidRequest):
                await reg.txn([], ops)
        assert await reg.range(ns) == []
        # different keys in sibling txns are fine
        t = await reg.txn([], [R.Txn((), (R.Put(k, b"1"),)), R.Txn((), (R.Put(k + "2", b"2"),))])
        assert t.succeeded and len(await reg.range(ns)) == 2


async def test_nested_branches_may_write_the_same_key(registry_url: str, ns: str) -> None:
    async with R.connect(registry_url) as reg:
        t = await reg.txn([], [R.Txn((R.version(ns + "k") == 0,), (R.Put(ns + "k", b"new"),),
                                     (R.Put(ns + "k", b"again"),))])
        assert t.succeeded and (await reg.get(ns + "k")).value == b"new"  # type: ignore[union-attr]
