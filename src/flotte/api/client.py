"""A typed async client for the API (``flotte``'s CLI, tests, scripts).

::

    async with Client("unix:///run/flotte/api.sock") as api:
        await api.create_unit("web.service", [("Service", "ExecStart", "/bin/web")],
                              "launched")
        for unit in await api.list_units():
            print(unit.name, unit.current_state)

``endpoint`` is ``unix:///path.sock`` (no token needed) or
``http(s)://host:port`` (send the server's token).  Listings follow
``nextPageToken`` to the end, as fleet's Go client did.  Every error answer
raises :class:`ApiError` with the server's message; a unit that does not
exist is ``None`` from the ``get_*`` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import quote, urlencode

from flotte.api.http import HttpFailure, Transport
from flotte.engine.keyspace import MachineRecord, StateRecord


class ApiError(Exception):
    """The API answered with an error (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class UnitOption(NamedTuple):
    section: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    options: list[UnitOption] = field(default_factory=list)
    desired_state: str = ""
    current_state: str = ""
    machine_id: str = ""


@dataclass(frozen=True, slots=True)
class UnitState:
    name: str
    hash: str = ""
    machine_id: str = ""
    load_state: str = ""
    active_state: str = ""
    sub_state: str = ""


@dataclass(frozen=True, slots=True)
class Machine:
    id: str
    primary_ip: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reasons:
    """Why a unit is not placed: machine id → sentence (``""``: cluster-wide)."""

    name: str
    reasons: dict[str, str]
    machine_id: str = ""
    desired_state: str = ""
    current_state: str = ""


@dataclass(frozen=True, slots=True)
class UnitStatus:
    name: str
    hash: str = ""
    desired_state: str = ""
    current_state: str = ""
    machine_id: str = ""
    global_: bool = False
    state: StateRecord | None = None
    machine: MachineRecord | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One registry change under the cluster prefix (``value`` is ``None`` for deletes)."""

    revision: int
    type: str
    key: str
    kind: str
    name: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class KVNode:
    key: str
    value: str | None = None
    dir: bool = False
    nodes: list[KVNode] = field(default_factory=list)
    created_index: int = 0
    modified_index: int = 0
    ttl: int | None = None


def _s(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _unit(obj: Mapping[str, Any]) -> Unit:
    return Unit(_s(obj, "name"),
                [UnitOption(_s(o, "section"), _s(o, "name"), _s(o, "value"))
                 for o in obj.get("options") or []],
                _s(obj, "desiredState"), _s(obj, "currentState"), _s(obj, "machineID"))


def _unit_state(obj: Mapping[str, Any]) -> UnitState:
    return UnitState(_s(obj, "name"), _s(obj, "hash"), _s(obj, "machineID"),
                     _s(obj, "systemdLoadState"), _s(obj, "systemdActiveState"),
                     _s(obj, "systemdSubState"))


def _kv_node(obj: Mapping[str, Any]) -> KVNode:
    return KVNode(_s(obj, "key"), obj.get("value"), bool(obj.get("dir")),
                  [_kv_node(n) for n in obj.get("nodes") or []],
                  int(obj.get("createdIndex", 0)), int(obj.get("modifiedIndex", 0)),
                  obj.get("ttl"))


def _q(name: str) -> str:
    """Percent-encode a path segment (``@`` → ``%40``, as fleetctl sends it)."""
    return quote(name, safe="")


class Client:
    """See the module docs.  Use as ``async with`` or call :meth:`close`."""

    def __init__(self, endpoint: str, token: str | None = None, *,
                 timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.token = token
        self.timeout = timeout
        if endpoint.startswith("unix://"):
            self._socket: str | None = endpoint[len("unix://"):]
            if not self._socket:
                raise ValueError(f"endpoint {endpoint!r} names no socket file")
            self._base = "http://localhost"
        elif endpoint.startswith(("http://", "https://")):
            self._socket = None
            self._base = endpoint.rstrip("/")
        else:
            raise ValueError(f"endpoint {endpoint!r} must be unix:///path.sock or "
                             "http(s)://host:port")
        self._transport = Transport(
            socket_path=self._socket, base=self._base,
            headers={"Authorization": f"Bearer {token}"} if token else None)
        self._bulk: bool | None = None  # does the server have flotte's /v1 listings?

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing to release: every request has its own connection (see ``api/http.py``)."""

    # -- transport -------------------------------------------------------------------
    @staticmethod
    def _target(path: str, query: Mapping[str, str] | None = None) -> str:
        return f"{path}?{urlencode(dict(query), quote_via=quote)}" if query else path

    async def _request(self, method: str, path: str, *,
                       query: Mapping[str, str] | None = None,
                       body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self._transport.send(method, self._target(path, query),
                                                  body=data, headers=headers)
                try:
                    raw = await resp.body()
                finally:
                    await resp.close()
        except HttpFailure as exc:
            raise ApiError(0, f"cannot reach the flotte API at {self.endpoint}: {exc}") from exc
        except TimeoutError:
            raise ApiError(0, f"the flotte API at {self.endpoint} did not answer {method} "
                              f"{path} within {self.timeout:g}s") from None
        if resp.status >= 400:
            raise ApiError(resp.status, _error_message(raw, resp.reason))
        return resp.status, raw

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        _, raw = await self._request(method, path, **kw)
        return json.loads(raw) if raw else None

    async def _pages(self, path: str, field_name: str,
                     query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = dict(query or {})
        while True:
            page = await self._json("GET", path, query=params or None) or {}
            items.extend(page.get(field_name) or [])
            token = page.get("nextPageToken")
            if not token:
                return items
            params["nextPageToken"] = token

    async def _stream(self, path: str, query: Mapping[str, str] | None = None
                      ) -> AsyncIterator[bytes]:
        """Lines of a streaming answer (no overall timeout: it may never end)."""
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self._transport.send("GET", self._target(path, query))
        except HttpFailure as exc:
            raise ApiError(0, f"cannot reach the flotte API at {self.endpoint}: {exc}") from exc
        except TimeoutError:
            raise ApiError(0, f"the flotte API at {self.endpoint} did not answer GET {path} "
                              f"within {self.timeout:g}s") from None
        try:
            if resp.status >= 400:
                raise ApiError(resp.status, _error_message(await resp.body(), resp.reason))
            async for line in resp.lines():
                yield line
        except (HttpFailure, OSError, asyncio.IncompleteReadError) as exc:
            raise ApiError(0, f"stream from the flotte API at {self.endpoint} failed: "
                              f"{exc}") from exc
        finally:
            await resp.close()

    # -- fleet API -------------------------------------------------------------------
    async def _listing(self, bulk: str, paged: str, field_name: str,
                       query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """A whole collection: flotte's one-request ``/v1`` listing, or fleet's pages
        from a server without it (a real fleetd, or an older flotte)."""
        if self._bulk is not False and not query:
            try:
                obj = await self._json("GET", bulk)
                self._bulk = True
                return list((obj or {}).get(field_name) or [])
            except ApiError as exc:
                if exc.status not in (404, 405):
                    raise
                self._bulk = False
        return await self._pages(paged, field_name, query)

    async def list_units(self) -> list[Unit]:
        return [_unit(u) for u in await self._listing("/v1/units", "/fleet/v1/units", "units")]

    async def get_unit(self, name: str) -> Unit | None:
        try:
            return _unit(await self._json("GET", f"/fleet/v1/units/{_q(name)}"))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_unit(self, name: str, options: Iterable[tuple[str, str, str]],
                          desired_state: str | None = None) -> None:
        """Submit a unit, options as ``(section, name, value)``.

        A new unit starts in ``desired_state`` (``inactive`` if ``None``).  An
        existing one with different options is replaced (its desired state
        reset likewise, as ``fleetctl --replace``); with the same options only
        ``desired_state`` is applied, and ``None`` is then a 409.
        """
        body: dict[str, Any] = {
            "name": name,
            "options": [{"section": s, "name": n, "value": v} for s, n, v in options]}
        if desired_state is not None:
            body["desiredState"] = desired_state
        await self._request("PUT", f"/fleet/v1/units/{_q(name)}", body=body)

    async def set_desired_state(self, name: str, state: str) -> None:
        await self._request("PUT", f"/fleet/v1/units/{_q(name)}",
                            body={"name": name, "desiredState": state})

    async def destroy_unit(self, name: str) -> None:
        await self._request("DELETE", f"/fleet/v1/units/{_q(name)}")

    async def list_unit_states(self, *, machine_id: str | None = None,
                               unit_name: str | None = None) -> list[UnitState]:
        query = {k: v for k, v in (("machineID", machine_id), ("unitName", unit_name)) if v}
        return [_unit_state(s) for s in
                await self._listing("/v1/states", "/fleet/v1/state", "states", query)]

    async def get_unit_state(self, name: str) -> UnitState | None:
        try:
            return _unit_state(await self._json("GET", f"/fleet/v1/state/{_q(name)}"))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_machines(self) -> list[Machine]:
        return [Machine(_s(m, "id"), _s(m, "primaryIP"), dict(m.get("metadata") or {}))
                for m in await self._pages("/fleet/v1/machines", "machines")]

    async def patch_machine_metadata(self, machine_id: str,
                                     values: Mapping[str, str] | None = None,
                                     remove: Iterable[str] = ()) -> None:
        """Set and remove dynamic metadata keys of one machine, atomically."""
        ops: list[dict[str, Any]] = [
            {"op": "add", "path": f"/{machine_id}/metadata/{k}", "value": {"value": v}}
            for k, v in (values or {}).items()]
        ops += [{"op": "remove", "path": f"/{machine_id}/metadata/{k}"} for k in remove]
        await self._request("PATCH", "/fleet/v1/machines", body=ops)

    # -- flotte's own routes -----------------------------------------------------------
    async def reasons(self, name: str) -> Reasons:
        obj = await self._json("GET", f"/v1/units/{_q(name)}/reasons")
        return Reasons(_s(obj, "name"), dict(obj.get("reasons") or {}), _s(obj, "machineID"),
                       _s(obj, "desiredState"), _s(obj, "currentState"))

    async def status(self, name: str) -> UnitStatus:
        obj = await self._json("GET", f"/v1/units/{_q(name)}/status")
        state = StateRecord.decode(json.dumps(obj["state"]).encode()) if obj.get("state") \
            else None
        machine = MachineRecord.decode(json.dumps(obj["machine"]).encode()) \
            if obj.get("machine") else None
        return UnitStatus(_s(obj, "name"), _s(obj, "hash"), _s(obj, "desiredState"),
                          _s(obj, "currentState"), _s(obj, "machineID"),
                          bool(obj.get("global")), state, machine)

    async def journal(self, name: str, lines: int | None = 10, follow: bool = False
                      ) -> AsyncIterator[str]:
        """Journal lines (without newlines); with ``follow`` until the caller stops."""
        query = {"follow": "1" if follow else "0"}
        if lines is not None:
            query["lines"] = str(lines)
        async for raw in self._stream(f"/v1/units/{_q(name)}/journal", query):
            yield raw.decode("utf-8", "replace").rstrip("\n")

    async def events(self, since: int | None = None, *, prefix: str | None = None
                     ) -> AsyncIterator[Event]:
        """Changes under the cluster prefix (or under ``prefix``, e.g. ``/services/``);
        resume with ``since=<last revision + 1>``."""
        query: dict[str, str] = {}
        if since is not None:
            query["since"] = str(since)
        if prefix is not None:
            query["prefix"] = prefix
        async for raw in self._stream("/v1/events", query or None):
            if not raw.strip():
                continue
            obj = json.loads(raw)
            if obj.get("type") == "heartbeat":
                continue
            if obj.get("type") == "error":
                raise ApiError(0, _s(obj.get("error") or {}, "message"))
            yield Event(int(obj["revision"]), _s(obj, "type"), _s(obj, "key"),
                        _s(obj, "kind"), _s(obj, "name"), obj.get("value"))

    def change_signal(self, prefix: str) -> ChangeSignal:
        """Wakes a poller when a key under ``prefix`` changes (``/v1/events?prefix=``)."""
        return ChangeSignal(self, prefix)

    # -- kv ------------------------------------------------------------------------------
    @staticmethod
    def _kv_path(key: str) -> str:
        return "/v1/kv/" + "/".join(_q(p) for p in key.strip("/").split("/") if p)

    async def kv_get(self, key: str, *, recursive: bool = False) -> KVNode | None:
        """A key or a directory (``dir=True``, children in ``nodes``); ``None`` if absent."""
        try:
            obj = await self._json("GET", self._kv_path(key),
                                   query={"recursive": "true"} if recursive else None)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return _kv_node(obj["node"])

    async def kv_set(self, key: str, value: str, *, ttl: int | None = None,
                     prev_exist: bool | None = None, prev_value: str | None = None,
                     prev_index: int | None = None) -> KVNode:
        """Set ``key``; ``ttl`` puts it on a lease; ``prev_*`` make it a compare-and-swap
        (:class:`ApiError` 412 when the comparison fails)."""
        query: dict[str, str] = {}
        if ttl is not None:
            query["ttl"] = str(ttl)
        if prev_exist is not None:
            query["prevExist"] = "true" if prev_exist else "false"
        if prev_value is not None:
            query["prevValue"] = prev_value
        if prev_index is not None:
            query["prevIndex"] = str(prev_index)
        obj = await self._json("PUT", self._kv_path(key), query=query or None,
                               body={"value": value})
        return _kv_node(obj["node"])

    async def kv_delete(self, key: str, *, recursive: bool = False,
                        prev_value: str | None = None, prev_index: int | None = None) -> None:
        query: dict[str, str] = {}
        if recursive:
            query["recursive"] = "true"
        if prev_value is not None:
            query["prevValue"] = prev_value
        if prev_index is not None:
            query["prevIndex"] = str(prev_index)
        await self._request("DELETE", self._kv_path(key), query=query or None)


def _error_message(raw: bytes, reason: str | None) -> str:
    try:
        obj = json.loads(raw)
        message = obj["error"]["message"]
        if isinstance(message, str) and message:
            return message
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace").strip()
        if text:
            return text
    return reason or "error"


__all__ = ["ApiError", "Client", "Event", "KVNode", "Machine", "Reasons", "Unit",
           "UnitOption", "UnitState", "UnitStatus"]


class ChangeSignal:
    """Turns polling into waiting: set when a key under ``prefix`` changes.

    Readers that re-read keys on every wake (``kv watch``, confd over the API)
    call :meth:`wait` with their poll interval instead of sleeping.  While the
    event stream is up a change wakes them at once (milliseconds instead of up
    to a poll interval) and :meth:`wait` sleeps up to ``idle`` seconds between
    safety re-reads; when the server lacks ``?prefix=`` (an older flotte) or
    the stream breaks, :meth:`wait` falls back to the poll interval, and the
    stream is retried.
    """

    def __init__(self, client: Client, prefix: str, *, idle: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.idle = idle
        self.live = False
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def clear(self) -> None:
        """Forget changes seen so far (call before re-reading the keys)."""
        self._event.clear()

    async def wait(self, poll: float) -> None:
        """Until a change (or ``poll`` seconds without a live stream, ``idle`` with one)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name=f"changes {self.prefix}")
            await asyncio.sleep(0)
        try:
            async with asyncio.timeout(self.idle if self.live else poll):
                await self._event.wait()
        except TimeoutError:
            pass

    async def _listen(self) -> None:
        try:
            async for ev in self.client.events(prefix=self.prefix):
                self.live = True
                if ev.key.startswith(self.prefix):
                    self._event.set()
        except (ApiError, OSError, ValueError):
            pass
        finally:
            self.live = False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
