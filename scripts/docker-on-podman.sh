#!/bin/sh
# docker-on-podman.sh: the `docker` command of fleet-era unit files, run by podman.
#
# Unit files of the CoreOS era call `/usr/bin/docker run|kill|stop|rm|ps|pull|start|inspect …`.
# Podman understands those verbs and flags as they are, so this shim only has
# to exec podman — with two additions:
#
#  * the configuration of the caller's environment is kept (CONTAINERS_CONF,
#    CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF); a machine that needs
#    its own is given a two-line wrapper that exports them and execs this file
#    (see docs/containers.md and tests/containers/support.py);
#  * `--link NAME[:ALIAS]` (`docker run`/`docker create`), which podman does not
#    have, becomes what Docker's legacy links gave the container: an /etc/hosts
#    entry for ALIAS and the ALIAS_PORT_<port>_TCP_ADDR/… variables for every
#    port the linked container's image exposes.  The seed's chapter 7
#    (`--link mongo-ins:mongo`, read as $MONGO_PORT_27017_TCP_ADDR) needs it.
#    As with Docker, linking to a container that is not running fails (125).
#    Every `--link` argument is translated, also one that would belong to the
#    container's own command line: this shim does not know which flags take
#    values.
#
# PODMAN names the podman binary (default: podman on PATH).
set -u
podman=${PODMAN:-podman}

case ${1-} in
run | create) ;;
*) exec "$podman" "$@" ;;
esac

n=$#
i=0
while [ "$i" -lt "$n" ]; do
  arg=$1
  shift
  i=$((i + 1))
  case $arg in
  --link)
    if [ "$i" -ge "$n" ]; then
      echo "docker: flag needs an argument: --link" >&2
      exit 125
    fi
    link=$1
    shift
    i=$((i + 1))
    ;;
  --link=*) link=${arg#--link=} ;;
  *)
    set -- "$@" "$arg"
    continue
    ;;
  esac
  target=${link%%:*}
  alias=${link#*:}
  [ -n "$alias" ] || alias=$target
  state=$("$podman" inspect --type container \
    --format '{{.State.Running}} {{.NetworkSettings.IPAddress}} {{.Image}}' "$target") || exit 125
  running=${state%% *}
  rest=${state#* }
  ip=${rest%% *}
  image=${rest#* }
  if [ "$running" != true ] || [ -z "$ip" ]; then
    echo "Error: cannot link to a non running container: /$target AS /$alias" >&2
    exit 125
  fi
  env_alias=$(printf '%s' "$alias" | tr 'a-z' 'A-Z' | tr -c 'A-Z0-9\n' '_')
  set -- "$@" --add-host "$alias:$ip"
  ports=$("$podman" image inspect \
    --format '{{range $p, $v := .Config.ExposedPorts}}{{$p}} {{end}}' "$image") || exit 125
  first=
  for p in $ports; do
    port=${p%/*}
    proto=${p#*/}
    [ "$proto" != "$p" ] || proto=tcp
    upper=$(printf '%s' "$proto" | tr 'a-z' 'A-Z')
    set -- "$@" \
      --env "${env_alias}_PORT_${port}_${upper}=$proto://$ip:$port" \
      --env "${env_alias}_PORT_${port}_${upper}_ADDR=$ip" \
      --env "${env_alias}_PORT_${port}_${upper}_PORT=$port" \
      --env "${env_alias}_PORT_${port}_${upper}_PROTO=$proto"
    [ -n "$first" ] || first=$proto://$ip:$port
  done
  [ -z "$first" ] || set -- "$@" --env "${env_alias}_PORT=$first"
done
exec "$podman" "$@"
