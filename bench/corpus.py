"""A deterministic corpus of realistic unit files for benchmarks.

Shapes follow what fleet users write: the seed's container units, simple
daemons, oneshots with RemainAfterExit, templates with specifiers, sidekicks
with BindsTo= and [X-Fleet] rules, a few continuation lines and comments.
"""

from __future__ import annotations

import random

_SHAPES = [
    """[Unit]
Description=Apache web server service listening on port %i
Requires=etcd.service
Requires=docker.service
After=etcd.service
After=docker.service

[Service]
TimeoutStartSec=0
KillMode=none
EnvironmentFile=/etc/environment
ExecStartPre=-/usr/bin/docker kill apache.%i
ExecStartPre=-/usr/bin/docker rm apache.%i
ExecStartPre=/usr/bin/docker pull eboraas/apache
ExecStart=/usr/bin/docker run --name apache.%i -p ${COREOS_PUBLIC_IPV4}:%i:80 eboraas/apache
ExecStop=/usr/bin/docker stop apache.%i

[X-Fleet]
Conflicts=apache@*.service
""",
    """[Unit]
Description=Service {n}
After=network.target

[Service]
Type=simple
User=nobody
ExecStart=/usr/local/bin/app{n} --port {port} --workers 4
Restart=on-failure
RestartSec=2s
LimitNOFILE=65536
Environment=PORT={port} "OPTS=--verbose --color"

[Install]
WantedBy=multi-user.target
""",
    """# sidekick {n}
[Unit]
Description=Announce web{n}
BindsTo=web{n}.service
After=web{n}.service

[Service]
ExecStart=/bin/sh -c 'while true; do \\
    etcdctl set /services/web/{n} "{{\\"port\\": {port}}}" --ttl 30; \\
    sleep 20; \\
  done'
ExecStop=/usr/bin/etcdctl rm /services/web/{n}

[X-Fleet]
MachineOf=web{n}.service
""",
    """[Unit]
Description=Data volume {n}
Requires=docker.service
After=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStartPre=-/usr/bin/docker rm data{n}
ExecStart=/usr/bin/docker run -v /data --name data{n} busybox echo created
TimeoutStopSec=30
""",
    """[Unit]
Description=Worker {n}
Wants=redis.service
After=redis.service

[Service]
ExecStart=/opt/worker/bin/worker -q jobs{n}
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGINT
TimeoutStopSec=1min 30s
SuccessExitStatus=143
WorkingDirectory=/opt/worker

[X-Fleet]
MachineMetadata="region=eu" "disk=ssd"
Global=false
""",
]


def corpus(count: int = 10_000, seed: int = 42) -> list[tuple[str, str]]:
    """``count`` (unit name, text) pairs."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        k = rnd.randrange(len(_SHAPES))
        port = 8000 + i
        text = _SHAPES[k].replace("{n}", str(i)).replace("{port}", str(port))
        text = text.replace("{{", "{").replace("}}", "}")
        name = f"apache@{port}.service" if k == 0 else f"unit{i}.service"
        out.append((name, text))
    return out
