#!/usr/bin/env bash
# Install the system packages flotte's tests and demo use, only those missing.
# Safe to run repeatedly; needs root (or sudo) only when something is missing.
set -euo pipefail

# command-or-path  debian-package
deps=(
  "/lib/systemd/systemd systemd"        # differential test oracle (systemd --test --user)
  "etcd etcd-server"                    # registry backend for clusters
  "nginx nginx-light"                   # load balancer the demo reloads
  "podman podman"                       # container units (docker stand-in)
  "runc runc"
  "/bin/busybox busybox-static"         # the container tests' images
  "curl curl"                           # the seed's secretaries (and the container tests)
  "setpriv util-linux"                  # drop privileges for the oracle
)

missing=()
for entry in "${deps[@]}"; do
  probe=${entry%% *}; pkg=${entry##* }
  if [[ $probe == /* ]]; then
    [[ -e $probe ]] || missing+=("$pkg")
  else
    command -v "$probe" >/dev/null 2>&1 || [[ -x /usr/sbin/$probe || -x /usr/bin/$probe ]] || missing+=("$pkg")
  fi
done

# python3 -m venv needs ensurepip, which Debian ships separately.
PY=${PYTHON:-python3}
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  missing+=("python${ver}-venv")
fi

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "system-deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps podman from pulling a desktop's worth of packages.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts the daemons it installs; flotte's tests start their own on loopback.
for svc in etcd nginx; do
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
