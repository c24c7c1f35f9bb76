"""Registry backends side by side (issue: "the embedded store at least as fast as etcd").

One run, one table, the same ``flotte.registry`` interface for every backend:

* ``memory://`` — in-process, not durable: the reference (what the store
  costs without any I/O);
* ``sqlite://`` — the embedded default, a temp file, WAL + ``synchronous=FULL``
  (an fsync per group commit);
* ``etcd://`` — Debian's etcd started here on loopback with its own temp data
  dir and default durability (the test helper ``tests/registry/etcd_server.py``
  only shortens heartbeat/election so the member elects itself quickly).

Metrics (64-byte values, 25-byte keys):

* sequential puts/s, one at a time, with p50/p99 latency;
* concurrent puts/s, 64 in flight (64 workers under one ``gather``): the
  local store's group commit; for sqlite also the average writes per fsync;
* sequential gets/s with p50/p99;
* sequential compare-and-swap txn/s (``mod_revision(k) == rev`` → Put, else Get);
* watch latency: from just before ``put()`` to the event leaving the watch
  iterator in the same process, puts 5 ms apart and back-to-back.

Throughputs are the median of ``REPS`` rounds; latency percentiles pool every
round's samples.  Rounds interleave the backends (round 1 of every backend,
then round 2 …) so a burst of load from elsewhere on the machine does not
land on one backend only.  Every backend gets a warm-up first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flotte.registry as fr

_TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"  # etcd_server.py

REPS = 3
SEQ_PUTS = 2_000  # per round
CONC_PUTS = 10_000  # per round
CONC_IN_FLIGHT = 64
GETS = 2_000  # per round
TXNS = 1_000  # per round
WATCH_PUTS = 500  # per round, once 5 ms apart and once back-to-back
WATCH_GAP = 0.005
WARMUP = 200
VALUE = os.urandom(32).hex().encode()  # 64 bytes
assert len(VALUE) == 64

BACKENDS = ("memory", "sqlite", "etcd")


def _key(kind: str, rep: int, i: int) -> str:
    """A 25-byte key, e.g. ``/bench/seqput/r0/00001234``."""
    return f"/bench/{kind[:6]:>6}/r{rep}/{i:08d}"


def _pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@dataclass
class Stats:
    """Everything measured for one backend."""

    seq_put_rates: list[float] = field(default_factory=list)
    seq_put_lat: list[float] = field(default_factory=list)
    conc_put_rates: list[float] = field(default_factory=list)
    get_rates: list[float] = field(default_factory=list)
    get_lat: list[float] = field(default_factory=list)
    txn_rates: list[float] = field(default_factory=list)
    txn_lat: list[float] = field(default_factory=list)
    watch_gap_lat: list[float] = field(default_factory=list)
    watch_gap_after_ack: list[float] = field(default_factory=list)
    watch_b2b_lat: list[float] = field(default_factory=list)
    watch_b2b_after_ack: list[float] = field(default_factory=list)
    conc_writes: int = 0
    conc_commits: int = 0
    error: str | None = None
    counter: CommitCounter | None = None

    @staticmethod
    def rate(rates: list[float]) -> float:
        return statistics.median(rates) if rates else float("nan")


class CommitCounter:
    """Counts the local store's durable commits (wraps ``persistence.commit``; no src change)."""

    def __init__(self, reg: fr.Registry) -> None:
        self.commits = 0
        self._persistence: Any = None
        store = getattr(reg, "store", None)
        persistence = getattr(store, "persistence", None)
        if persistence is None:
            return
        self._persistence = persistence
        inner = persistence.commit

        def commit(batch: Any) -> None:
            self.commits += 1
            inner(batch)

        persistence.commit = commit

    @property
    def active(self) -> bool:
        return self._persistence is not None


# ---------------------------------------------------------------------------
# The measurements (each takes an open registry handle)


async def _timed_seq(n: int, op: Callable[[int], Awaitable[Any]]) -> tuple[float, list[float]]:
    lat: list[float] = []
    clock = time.perf_counter
    start = clock()
    for i in range(n):
        t = clock()
        await op(i)
        lat.append(clock() - t)
    return n / (clock() - start), lat


async def in_flight(n: int, op: Callable[[int], Awaitable[Any]]) -> None:
    """Run ``op(0..n-1)`` with exactly ``CONC_IN_FLIGHT`` calls outstanding.

    ``CONC_IN_FLIGHT`` workers under one ``gather``, each taking the next
    index, rather than ``n`` tasks queued on an ``asyncio.Semaphore``:
    CPython 3.11's ``Semaphore._wake_up_next`` walks the waiter deque, and
    with 10,000 queued tasks that walk (not the registry) dominated the
    memory and sqlite numbers (2-3x lower, measured).
    """
    indexes = iter(range(n))

    async def worker() -> None:
        for i in indexes:
            await op(i)

    await asyncio.gather(*(worker() for _ in range(min(CONC_IN_FLIGHT, n))))


async def seq_puts(rep: int, reg: fr.Registry, st: Stats) -> None:
    rate, lat = await _timed_seq(SEQ_PUTS, lambda i: reg.put(_key("seqput", rep, i), VALUE))
    st.seq_put_rates.append(rate)
    st.seq_put_lat += lat


async def conc_puts(rep: int, reg: fr.Registry, st: Stats) -> None:
    counter = st.counter
    assert counter is not None
    before = counter.commits
    start = time.perf_counter()
    await in_flight(CONC_PUTS, lambda i: reg.put(_key("concpt", rep, i), VALUE))
    st.conc_put_rates.append(CONC_PUTS / (time.perf_counter() - start))
    st.conc_writes += CONC_PUTS
    st.conc_commits += counter.commits - before


async def gets(rep: int, reg: fr.Registry, st: Stats) -> None:
    # Read the keys the sequential-put round wrote (all present).
    async def one(i: int) -> None:
        kv = await reg.get(_key("seqput", rep, i % SEQ_PUTS))
        if kv is None:
            raise AssertionError(f"get {_key('seqput', rep, i % SEQ_PUTS)}: missing")

    rate, lat = await _timed_seq(GETS, one)
    st.get_rates.append(rate)
    st.get_lat += lat


async def txns(rep: int, reg: fr.Registry, st: Stats) -> None:
    key = _key("casxxx", rep, 0)
    rev = await reg.put(key, VALUE)
    state = {"rev": rev}

    async def one(i: int) -> None:
        res = await reg.txn([fr.mod_revision(key) == state["rev"]], [fr.Put(key, VALUE)],
                            [fr.Get(key)])
        if not res.succeeded:
            raise AssertionError(f"CAS {i} on {key} failed: expected mod_revision "
                                 f"{state['rev']}, store has {res.responses}")
        state["rev"] = res.revision

    rate, lat = await _timed_seq(TXNS, one)
    st.txn_rates.append(rate)
    st.txn_lat += lat


async def watch_latency(reg: fr.Registry, tag: str, gap: float
                        ) -> tuple[list[float], list[float]]:
    """``WATCH_PUTS`` puts into a watched prefix; returns (put→event, ack→event) latencies."""
    prefix = f"/bench/watch-{tag}/"
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    got: dict[str, float] = {}
    clock = time.perf_counter
    warm = prefix + "warm-up"
    warm_seen = asyncio.Event()
    all_seen = asyncio.Event()
    watch = reg.watch(prefix)

    async def consume() -> None:
        async for event in watch:
            now = clock()
            key = event.kv.key
            if key == warm:
                warm_seen.set()
                continue
            got[key] = now
            if len(got) >= WATCH_PUTS:
                all_seen.set()

    task = asyncio.create_task(consume())
    try:
        # Start the stream for real (etcd opens its gRPC watch on first iteration).
        await reg.put(warm, VALUE)
        await asyncio.wait_for(warm_seen.wait(), 10)
        for i in range(WATCH_PUTS):
            key = f"{prefix}{i:08d}"
            sent[key] = clock()
            await reg.put(key, VALUE)
            acked[key] = clock()
            if gap:
                await asyncio.sleep(gap)
        await asyncio.wait_for(all_seen.wait(), 10)
    finally:
        await watch.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, fr.RegistryError):
            await task
    return [got[k] - sent[k] for k in sent], [got[k] - acked[k] for k in sent]


async def watches(rep: int, reg: fr.Registry, st: Stats) -> None:
    lat, after_ack = await watch_latency(reg, f"gap{rep}", WATCH_GAP)
    st.watch_gap_lat += lat
    st.watch_gap_after_ack += after_ack
    lat, after_ack = await watch_latency(reg, f"b2b{rep}", 0.0)
    st.watch_b2b_lat += lat
    st.watch_b2b_after_ack += after_ack


async def warm_up(reg: fr.Registry) -> None:
    for i in range(WARMUP):
        await reg.put(_key("warmup", 9, i), VALUE)
    for i in range(WARMUP):
        await reg.get(_key("warmup", 9, i))
    key = _key("warmup", 9, 0)
    rev = (await reg.put(key, VALUE))
    for _ in range(WARMUP // 4):
        rev = (await reg.txn([fr.mod_revision(key) == rev], [fr.Put(key, VALUE)])).revision
    await in_flight(WARMUP * 5, lambda i: reg.put(_key("warmcc", 9, i), VALUE))


# ---------------------------------------------------------------------------


async def run_all(urls: dict[str, str], stats: dict[str, Stats]) -> None:
    regs: dict[str, fr.Registry] = {}
    try:
        for name, url in urls.items():
            try:
                regs[name] = await fr.open_registry(url)
            except fr.RegistryError as exc:
                stats[name].error = f"cannot connect to {url}: {exc}"
                continue
            stats[name].counter = CommitCounter(regs[name])
            await warm_up(regs[name])

        async def each(fn: Callable[[fr.Registry, Stats], Awaitable[None]]) -> None:
            for name, reg in regs.items():
                if stats[name].error is None:
                    try:
                        await fn(reg, stats[name])
                    except (fr.RegistryError, AssertionError, TimeoutError) as exc:
                        stats[name].error = f"{type(exc).__name__}: {exc}"

        for rep in range(REPS):
            gc.collect()
            for step in (seq_puts, gets, txns, conc_puts, watches):
                await each(functools.partial(step, rep))
    finally:
        for reg in regs.values():
            with contextlib.suppress(Exception):
                await reg.close()


# ---------------------------------------------------------------------------
# Output


def _fmt_rate(v: float) -> str:
    return "-" if v != v else f"{v:,.0f}"


def _fmt_ms(samples: list[float]) -> str:
    if not samples:
        return "-"
    return f"{_pct(samples, 0.5) * 1e3:.3f} / {_pct(samples, 0.99) * 1e3:.3f}"


def print_table(names: list[str], stats: dict[str, Stats]) -> None:
    width = 26
    rows: list[tuple[str, list[str]]] = [
        (f"seq put/s (n={SEQ_PUTS}x{REPS})",
         [_fmt_rate(Stats.rate(stats[n].seq_put_rates)) for n in names]),
        ("  p50 / p99 ms", [_fmt_ms(stats[n].seq_put_lat) for n in names]),
        (f"conc put/s ({CONC_IN_FLIGHT} in flight)",
         [_fmt_rate(Stats.rate(stats[n].conc_put_rates)) for n in names]),
        ("  writes per fsync",
         [f"{stats[n].conc_writes / stats[n].conc_commits:.1f}" if stats[n].conc_commits
          else "-" for n in names]),
        (f"get/s (n={GETS}x{REPS})", [_fmt_rate(Stats.rate(stats[n].get_rates)) for n in names]),
        ("  p50 / p99 ms", [_fmt_ms(stats[n].get_lat) for n in names]),
        (f"CAS txn/s (n={TXNS}x{REPS})",
         [_fmt_rate(Stats.rate(stats[n].txn_rates)) for n in names]),
        ("  p50 / p99 ms", [_fmt_ms(stats[n].txn_lat) for n in names]),
        (f"watch {WATCH_PUTS}x{REPS}, {WATCH_GAP * 1e3:g} ms gap",
         [_fmt_ms(stats[n].watch_gap_lat) for n in names]),
        ("  of which after put ack", [_fmt_ms(stats[n].watch_gap_after_ack) for n in names]),
        (f"watch {WATCH_PUTS}x{REPS}, back-to-back", [_fmt_ms(stats[n].watch_b2b_lat) for n in names]),
        ("  of which after put ack", [_fmt_ms(stats[n].watch_b2b_after_ack) for n in names]),
    ]
    col = 19
    print(f"{'':<{width}}" + "".join(f"{n:>{col}}" for n in names))
    for label, cells in rows:
        print(f"{label:<{width}}" + "".join(f"{c:>{col}}" for c in cells))
    print("(rates: median of rounds; latencies: p50 / p99 over all samples, in ms; watch: "
          "from just before put() to the event out of the watch iterator; 'after put ack': "
          "from put() returning, negative when the event arrives first)")


def print_verdict(stats: dict[str, Stats], have_etcd: bool) -> None:
    print("\nverdict:")
    sq = stats["sqlite"]
    if not have_etcd:
        print("  sqlite >= etcd: not measured (no etcd column)")
    elif sq.error is None and stats["etcd"].error is None:
        et = stats["etcd"]
        wins = 0
        metrics = [("sequential puts/s", sq.seq_put_rates, et.seq_put_rates),
                   ("concurrent puts/s", sq.conc_put_rates, et.conc_put_rates),
                   ("gets/s", sq.get_rates, et.get_rates),
                   ("CAS txn/s", sq.txn_rates, et.txn_rates)]
        for label, a, b in metrics:
            s, e = Stats.rate(a), Stats.rate(b)
            ok = s >= e
            wins += ok
            if ok:
                print(f"  {label:<19} sqlite >= etcd: yes  ({s / e:.2f}x: {s:,.0f} vs {e:,.0f})")
            else:
                print(f"  {label:<19} sqlite >= etcd: NO   (sqlite {(1 - s / e) * 100:.0f}% "
                      f"slower: {s:,.0f} vs {e:,.0f})")
        print(f"  => 'embedded store at least as fast as etcd': "
              f"{'MET' if wins == len(metrics) else 'NOT MET'} ({wins}/{len(metrics)} metrics)")
    for name in BACKENDS:
        st = stats.get(name)
        if st is None or st.error is not None or not st.watch_gap_lat:
            continue
        p50 = _pct(st.watch_gap_lat, 0.5) * 1e3
        b2b = _pct(st.watch_b2b_lat, 0.5) * 1e3 if st.watch_b2b_lat else float("nan")
        print(f"  watch p50 < 1 ms, {name:<7}: {'yes' if p50 < 1 else 'NO '}  "
              f"(gapped {p50:.3f} ms, back-to-back {b2b:.3f} ms)")


def main() -> int:
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="flotte-bench-registry-"))
    etcd: Any = None
    names = ["memory", "sqlite"]
    urls = {"memory": f"memory://bench-{os.getpid()}",
            "sqlite": f"sqlite://{tmp / 'registry.db'}"}
    skipped: str | None = None
    try:
        if shutil.which("etcd") is None:
            skipped = ("etcd column skipped: no 'etcd' binary on PATH "
                       "(install Debian's etcd-server package)")
        else:
            sys.path.insert(0, str(_TESTS_DIR))
            try:
                from etcd_server import EtcdServer

                etcd = EtcdServer(tmp / "etcd")
                etcd.start(timeout=20)
                version = ""
                with contextlib.suppress(Exception):
                    import subprocess

                    out = subprocess.run([etcd.binary, "--version"], capture_output=True,
                                         text=True, timeout=5).stdout
                    version = out.splitlines()[0].split(":", 1)[1].strip()
                names.append("etcd")
                urls["etcd"] = etcd.url
                print(f"etcd {version} pid {etcd.pid} on {etcd.endpoint}, data in {tmp}/etcd")
            except Exception as exc:
                skipped = f"etcd column skipped: could not start etcd: {exc}"
            finally:
                with contextlib.suppress(ValueError):
                    sys.path.remove(str(_TESTS_DIR))
        if skipped:
            print(skipped)
        where = "sqlite file and etcd data dir" if "etcd" in names else "sqlite file"
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {where} in {tmp}; "
              f"values {len(VALUE)} B, keys {len(_key('seqput', 0, 0))} B")
        stats = {n: Stats() for n in names}
        asyncio.run(run_all(urls, stats))
        print()
        print_table(names, stats)
        for n in names:
            if stats[n].error:
                print(f"!! {n}: {stats[n].error}")
        print_verdict(stats, "etcd" in names)
        failed = any(stats[n].error for n in names)
    finally:
        if etcd is not None:
            etcd.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nregistry bench: {time.perf_counter() - t0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
