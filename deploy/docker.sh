#!/usr/bin/env bash
# A Docker engine and the images of the local check, with no image registry.
#
#   deploy/docker.sh engine-up     start a Docker engine of this checkout's own (dockerd with its
#                                  own socket, data root and pid file) unless one answers already;
#                                  installs docker.io, docker-compose and debootstrap with apt-get
#                                  when missing. Prints the DOCKER_HOST to use.
#   deploy/docker.sh engine-down   stop the engine engine-up started (never one it did not start)
#   deploy/docker.sh engine-env    print `export DOCKER_HOST=…` for the engine in use
#   deploy/docker.sh base-image    local/debian:bookworm, from debootstrap (the root filesystem is
#                                  cached between runs in ${NYC311_CACHE_DIR:-~/.cache/nyc311})
#   deploy/docker.sh app-image     nyc311-pipeline:local from deploy/images/app.Dockerfile: the
#                                  project and its dependencies as wheels built on this host
#                                  (HTTPS from inside a container fails certificate checks on
#                                  these machines), installed offline in the image
#   deploy/docker.sh images        base-image, then app-image
#
# The engine runs with --bridge=none and no iptables rules: containers reach each other only on
# networks a test creates, and the host's loopback with --network host.
#
# Environment:
#   DOCKER_HOST          an engine already running: used as it is, never stopped
#   NYC311_DOCKER_DIR    the engine's state (default /tmp/nyc311-docker-<hash of the checkout>:
#                        short, because a unix socket path is limited to 107 bytes)
#   NYC311_CACHE_DIR     cache of the Debian root filesystem (default ~/.cache/nyc311)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
HASH=$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)
STATE=${NYC311_DOCKER_DIR:-/tmp/nyc311-docker-$HASH}
CACHE=${NYC311_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nyc311}
SUITE=bookworm
BASE_IMAGE=local/debian:$SUITE
APP_IMAGE=nyc311-pipeline:local
OWN_HOST=unix://$STATE/docker.sock

say() { printf 'docker: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

sudo_() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

answers() { DOCKER_HOST=$1 timeout 10 docker info >/dev/null 2>&1; }

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [[ ${#missing[@]} == 0 ]] && return 0
    say "installing ${missing[*]} with apt-get"
    sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The engine to use: DOCKER_HOST when set, else ours when it runs, else the default socket.
engine_host() {
    if [[ -n ${DOCKER_HOST:-} ]]; then printf '%s\n' "$DOCKER_HOST"
    elif [[ -S $STATE/docker.sock ]]; then printf '%s\n' "$OWN_HOST"
    else printf '%s\n' "unix:///var/run/docker.sock"; fi
}

engine_up() {
    local host
    host=$(engine_host)
    if command -v docker >/dev/null && answers "$host"; then
        say "using the engine at $host"
        printf 'export DOCKER_HOST=%s\n' "$host"
        return 0
    fi
    [[ -n ${DOCKER_HOST:-} ]] && die "DOCKER_HOST=$DOCKER_HOST does not answer"
    install_packages
    [[ $(id -u) == 0 ]] || die "starting dockerd needs root (or set DOCKER_HOST to an engine)"
    mkdir -p "$STATE/data" "$STATE/exec"
    say "starting dockerd (state in $STATE)"
    dockerd --host "$OWN_HOST" --data-root "$STATE/data" --exec-root "$STATE/exec" \
        --pidfile "$STATE/dockerd.pid" --bridge=none --iptables=false --ip6tables=false \
        >"$STATE/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        if answers "$OWN_HOST"; then
            say "engine ready at $OWN_HOST"
            printf 'export DOCKER_HOST=%s\n' "$OWN_HOST"
            return 0
        fi
        sleep 1
    done
    tail -n 20 "$STATE/dockerd.log" >&2
    die "dockerd did not answer within 60 s (log: $STATE/dockerd.log)"
}

engine_down() {
    local pid
    [[ -f $STATE/dockerd.pid ]] || { say "no engine of this checkout runs"; return 0; }
    pid=$(cat "$STATE/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping dockerd (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$STATE/dockerd.pid"
}

base_image() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE is there"
        return 0
    fi
    local tarball=$CACHE/debian-$SUITE-minbase.tar
    if [[ ! -s $tarball ]]; then
        install_packages
        local rootfs
        rootfs=$(mktemp -d)
        say "debootstrap --variant=minbase $SUITE (about a minute; cached in $tarball)"
        sudo_ debootstrap --variant=minbase "$SUITE" "$rootfs" >"$rootfs.log" 2>&1 \
            || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed"; }
        mkdir -p "$CACHE"
        sudo_ tar -C "$rootfs" -c . >"$tarball.part" && mv "$tarball.part" "$tarball"
        sudo_ rm -rf "$rootfs" "$rootfs.log"
    fi
    say "importing $BASE_IMAGE"
    docker import - "$BASE_IMAGE" <"$tarball" >/dev/null
}

app_image() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local wheels=$REPO_ROOT/build/wheels python=$REPO_ROOT/.venv/bin/python
    [[ -x $python ]] || python=python3
    say "building the wheelhouse in build/wheels (the project and its dependencies)"
    rm -rf "$wheels" && mkdir -p "$wheels"
    "$python" -m pip wheel -q -w "$wheels" "$REPO_ROOT" >"$wheels.log" 2>&1 \
        || { tail -n 30 "$wheels.log" >&2; die "pip wheel failed (log: build/wheels.log)"; }
    ls "$wheels"/nyc311_pipeline-*.whl >/dev/null 2>&1 || die "no wheel of the project was built"
    say "building $APP_IMAGE"
    docker build --network host -q -f "$SCRIPT_DIR/images/app.Dockerfile" -t "$APP_IMAGE" \
        "$REPO_ROOT" >"$wheels.build.log" 2>&1 \
        || { tail -n 30 "$wheels.build.log" >&2; die "docker build failed"; }
    local usage
    usage=$(docker run --rm "$APP_IMAGE" nyc311 --help) || die "$APP_IMAGE does not run nyc311"
    say "$APP_IMAGE built: ${usage%%$'\n'*}"
}

case ${1:-} in
    engine-up) engine_up ;;
    engine-down) engine_down ;;
    engine-env) printf 'export DOCKER_HOST=%s\n' "$(engine_host)" ;;
    base-image) base_image ;;
    app-image) app_image ;;
    images) base_image; app_image ;;
    *) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
