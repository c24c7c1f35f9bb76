"""A minimal ``etcdctl`` (v2 syntax) on flotte's ``/v1/kv`` API, for the seed's secretaries.

The secretary of chapters 9–10 runs ``etcdctl set /services/apache/$IP '…' --ttl 30``
and ``etcdctl rm /services/apache/$IP``.  The simulated machines have no etcdctl
(and flotte's registry need not be etcd): their ``etcdctl`` is ``flotte kv``,
and this stub, which does exactly those calls through the machine's flotte
API socket, only stands in on a tree without ``flotte kv``
(``support.etcdctl_command``).  A test stand-in, not a tool.

Usage: ``etcdctl_stub.py --endpoint unix:///path.sock (set KEY VALUE [--ttl N] | rm KEY
| get KEY | ls [DIR])``.  Exit status 4 for a missing key, as etcdctl v2.
Standard library only: it runs with any python3.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import urllib.parse


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.unix_path)
        self.sock = sock


def request(endpoint: str, method: str, key: str, query: dict[str, str],
            body: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    conn = UnixConnection(endpoint.removeprefix("unix://"))
    path = "/v1/kv" + urllib.parse.quote(key)
    if query:
        path += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"error": {"message": raw.decode(errors="replace")}}
    return resp.status, parsed


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "--endpoint":
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, args = argv[1], argv[2:]
    ttl = None
    if "--ttl" in args:
        i = args.index("--ttl")
        ttl = args[i + 1]
        del args[i:i + 2]
    verb, rest = args[0], args[1:]
    if verb == "set" and len(rest) == 2:
        status, out = request(endpoint, "PUT", rest[0], {"ttl": ttl} if ttl else {},
                              {"value": rest[1]})
        if status < 300:
            print(rest[1])
            return 0
    elif verb == "rm" and len(rest) == 1:
        status, out = request(endpoint, "DELETE", rest[0], {})
        if status < 300:
            return 0
    elif verb == "get" and len(rest) == 1:
        status, out = request(endpoint, "GET", rest[0], {})
        if status < 300:
            node = out.get("node")
            print(node.get("value", "") if isinstance(node, dict) else "")
            return 0
    elif verb == "ls":
        status, out = request(endpoint, "GET", rest[0] if rest else "/", {})
        if status < 300:
            node = out.get("node")
            for child in (node.get("nodes") or []) if isinstance(node, dict) else []:
                print(child.get("key"))
            return 0
    else:
        print(f"etcdctl (flotte test stub): unsupported: {' '.join(args)}", file=sys.stderr)
        return 2
    err = out.get("error")
    message = err.get("message") if isinstance(err, dict) else out
    print(f"Error: {status}: {message}", file=sys.stderr)
    return 4 if status == 404 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
