"""Small local images that stand in for the seed's Docker Hub images.

The guide pulls ``eboraas/apache``, ``mongo``, its own ``node-app`` and
``nginx`` from Docker Hub.  CI has no registry, so each image is built from
files already on the machine (Debian's ``busybox-static`` and ``nginx-light``)
with ``podman import`` and saved as an OCI archive.  A simulated machine
either loads an archive into its store (``docker load``, for the chapter 7
units, whose image names stay unchanged) or "pulls" it with the image name
``oci-archive:/opt/images/<name>.tar`` (the chapters 9/10 units, whose
``ExecStartPre=docker pull`` must succeed offline).

Every image has ``/bin/init.sh`` as its entry point: it runs the command as a
child, passes reload signals on, and exits 0 on SIGTERM, as Apache, MongoDB
and nginx shut down on ``docker stop``.  Without it busybox ``httpd`` would run as PID 1, which
ignores SIGTERM, and every ``docker stop`` would wait 10 s for its SIGKILL
(spec/containers.md §1.4; docs/containers.md has what that does to a unit).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

#: bump when a recipe changes, so a cached build is not reused
RECIPES_VERSION = "2"

#: image key → reference inside the archive
IMAGES = {
    "apache": "localhost/apache:latest",
    "mongo": "localhost/mongo:latest",
    "node-app": "localhost/node-app:latest",
    "nginx": "localhost/nginx:latest",
}

INIT_SH = """#!/bin/sh
# PID 1 of flotte's test images: run the command as a child, pass HUP, USR1,
# USR2, QUIT and WINCH on (nginx reloads on HUP), and exit 0 on SIGTERM/SIGINT,
# as the daemons of the seed's images shut down on docker stop.
"$@" &
child=$!
for sig in HUP USR1 USR2 QUIT WINCH; do
  trap "kill -$sig $child 2>/dev/null" $sig
done
trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT
while :; do
  wait $child
  status=$?
  kill -0 $child 2>/dev/null || exit $status
done
"""

APACHE_INDEX = "It works! (flotte's busybox stand-in for eboraas/apache)\n"

EMPLOYEES = '[{"name": "Ada Lovelace"}, {"name": "Grace Hopper"}]\n'

NODE = """#!/bin/sh
# Stand-in for `node /NodeJS-Sample-App/EmployeeDB/app.js`, the guide's chapter 7
# app: it serves on port 3000 what it reads from MongoDB at the address the
# `--link mongo-ins:mongo` gave it.
echo "$MONGO_PORT_27017_TCP_ADDR:$MONGO_PORT_27017_TCP_PORT" > /tmp/mongo-address
exec httpd -f -p 3000 -h /app
"""

EMPLOYEES_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
db=$(cat /tmp/mongo-address)
wget -q -O - "http://$db/" || echo "no MongoDB at $db"
"""


def _run(argv: list[str], env: dict[str, str]) -> str:
    """Run podman with a private, writable /var/lib (its blob cache stays in the build dir)."""
    work = Path(env["FLOTTE_IMAGE_BUILD"])
    mount = ("mount -t overlay overlay -o lowerdir=/var/lib,"
             f"upperdir={work / 'varlib/upper'},workdir={work / 'varlib/work'} /var/lib "
             '&& exec "$@"')
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", mount,
                           "sh", *argv], env=env, capture_output=True, text=True, check=False,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def busybox_root(root: Path) -> None:
    """A minimal rootfs: static busybox with its applets, users, and /bin/init.sh."""
    for d in ("bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "root", "run",
              "var/run", "var/log"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    busybox = root / "bin" / "busybox"
    shutil.copy2("/bin/busybox", busybox)
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox" and not (root / "bin" / applet).exists():
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n")
    _script(root / "bin" / "init.sh", INIT_SH)


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


_LDD = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def _copy_with_libs(root: Path, binaries: list[str]) -> None:
    """Copy ELF files and the shared libraries ``ldd`` lists for them into ``root``."""
    todo = list(binaries)
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        todo += _LDD.findall(out)
    for path in todo:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)  # follows symlinks: the image gets the file itself


def nginx_root(root: Path) -> None:
    """Debian's nginx-light (binary, libraries, modules, /etc/nginx) on the busybox root."""
    busybox_root(root)
    modules = sorted(str(p) for p in Path("/usr/lib/nginx/modules").glob("*.so"))
    _copy_with_libs(root, ["/usr/sbin/nginx", *modules])
    for d in ("/etc/nginx", "/usr/share/nginx"):
        shutil.copytree(d, root / d.lstrip("/"), symlinks=True, dirs_exist_ok=True)
    for d in ("var/log/nginx", "var/lib/nginx", "var/www/html"):
        (root / d).mkdir(parents=True, exist_ok=True)
    # a page of our own, so a test knows it reached this nginx
    html = root / "usr/share/nginx/html/index.html"
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text("Welcome to nginx! (flotte's image from Debian's nginx-light)\n")
    shutil.copy2(html, root / "var/www/html/index.html")


def _import(env: dict[str, str], root: Path, ref: str, changes: list[str]) -> None:
    args = ["podman", "import", "-q"]
    for change in ["ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", 'ENTRYPOINT ["/bin/init.sh"]',
                   *changes]:
        args += ["--change", change]
    tar = root.with_suffix(".tar")
    with tarfile.open(tar, "w") as tf:
        tf.add(root, arcname=".")
    _run([*args, str(tar), ref], env)
    tar.unlink()


def build(dest: Path) -> dict[str, Path]:
    """Build every image into ``dest/<key>.tar`` (OCI archives); returns key → archive.

    Uses a throwaway podman store under ``dest`` (never the machine's global
    one), removed once the archives are written.
    """
    work = dest / "build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    storage = work / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{work / "graph"}"\n'
                       f'runroot = "{work / "run"}"\n')
    conf = work / "containers.conf"
    conf.write_text(f'[engine]\nruntime = "runc"\nevents_logger = "file"\n'
                    f'events_logfile_path = "{work / "events.log"}"\n'
                    f'tmp_dir = "{work / "tmp"}"\n'
                    f'[network]\nnetwork_config_dir = "{work / "cni"}"\n')
    (work / "varlib" / "upper").mkdir(parents=True)
    (work / "varlib" / "work").mkdir()
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(conf),
           "FLOTTE_IMAGE_BUILD": str(work)}
    try:
        apache = work / "apache"
        busybox_root(apache)
        (apache / "www").mkdir()
        (apache / "www" / "index.html").write_text(APACHE_INDEX)
        _import(env, apache, IMAGES["apache"],
                ["EXPOSE 80/tcp", 'CMD ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]'])

        mongo = work / "mongo"
        busybox_root(mongo)
        (mongo / "db").mkdir()
        (mongo / "db" / "index.html").write_text(EMPLOYEES)
        _import(env, mongo, IMAGES["mongo"],
                ["EXPOSE 27017/tcp", 'CMD ["httpd", "-f", "-p", "27017", "-h", "/db"]'])

        node = work / "node-app"
        busybox_root(node)
        _script(node / "bin" / "node", NODE)
        _script(node / "app" / "cgi-bin" / "employees", EMPLOYEES_CGI)
        _import(env, node, IMAGES["node-app"], ["EXPOSE 3000/tcp", 'CMD ["node"]'])

        nginx = work / "nginx"
        nginx_root(nginx)
        _import(env, nginx, IMAGES["nginx"],
                ["EXPOSE 80/tcp", 'CMD ["nginx", "-g", "daemon off;"]'])

        archives = {}
        for key, ref in IMAGES.items():
            out = dest / f"{key}.tar"
            out.unlink(missing_ok=True)
            _run(["podman", "save", "-q", "--format", "oci-archive", "-o", str(out), ref], env)
            archives[key] = out
        return archives
    finally:
        with contextlib.suppress(RuntimeError):
            _run(["podman", "rmi", "-a", "-f"], env)
        shutil.rmtree(work, ignore_errors=True)
