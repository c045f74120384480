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
#   deploy/docker.sh kafka-image   nyc311-kafka:local from deploy/images/kafka.Dockerfile, a
#                                  stand-in for apache/kafka:4.1.1: Debian's Java 17 and the jars
#                                  services/services.sh resolves (staged in build/kafka/libs);
#                                  the official image's KAFKA_* / CLUSTER_ID environment and tool
#                                  names, so docker-compose.yml runs unchanged with
#                                  KAFKA_IMAGE=nyc311-kafka:local
#   deploy/docker.sh check-kafka   nyc311-kafka:local with docker-compose.yml's kafka environment
#                                  on a network of its own: the healthcheck answers, the app image
#                                  creates the topics, `docker stop` ends the broker cleanly and a
#                                  restart keeps them (builds a missing image first; removes its
#                                  containers, network and volume however it ends)
#   deploy/docker.sh postgres-image
#                                  nyc311-postgres:local from deploy/images/postgres.Dockerfile:
#                                  a stand-in for postgres:16 (Debian's PostgreSQL 15) under the
#                                  official image's contract; for POSTGRES_IMAGE in compose
#   deploy/docker.sh images        base-image, then app-image, kafka-image and postgres-image
#   deploy/docker.sh check-postgres
#                                  nyc311-postgres:local as compose runs it, on a network and a
#                                  volume of its own: the healthcheck, `nyc311 db upgrade` and
#                                  `db summary` from nyc311-pipeline:local, a wrong password
#                                  refused, docker stop (prompt and clean), the schema still there
#                                  after a restart; containers, network and volume removed after
#   deploy/docker.sh test-clean    remove what a killed test run left: the containers and networks
#                                  labelled nyc311.test=1 (tests/backends.py) of processes of this
#                                  host that are gone; those of running test runs are kept
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
KAFKA_IMAGE=nyc311-kafka:local
POSTGRES_IMAGE=nyc311-postgres:local
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

# The Kafka jars services/services.sh resolves with Maven (once, into the cache), for the version
# services/kafka/pom.xml names.
kafka_libs() {
    local version
    version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' \
        "$REPO_ROOT/services/kafka/pom.xml" | head -n 1)
    [[ -n $version ]] || die "no <kafka.version> in services/kafka/pom.xml"
    printf '%s/kafka-%s/libs' "$CACHE" "$version"
}

kafka_image() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local libs stage=$REPO_ROOT/build/kafka
    libs=$(kafka_libs)
    if [[ ! -f $(dirname "$libs")/libs.complete ]]; then
        say "resolving the Kafka jars (services/services.sh, Maven, first run only)"
        bash "$REPO_ROOT/services/services.sh" kafka-tool storage random-uuid >/dev/null
    fi
    compgen -G "$libs/kafka_2.13-*.jar" >/dev/null || die "no Kafka jars in $libs"
    say "staging the Kafka jars in build/kafka/libs"
    rm -rf "$stage" && mkdir -p "$stage"
    cp -r "$libs" "$stage/libs"
    say "building $KAFKA_IMAGE"
    docker build --network host -q -f "$SCRIPT_DIR/images/kafka.Dockerfile" -t "$KAFKA_IMAGE" \
        "$REPO_ROOT" >"$stage.build.log" 2>&1 \
        || { tail -n 30 "$stage.build.log" >&2; die "docker build failed"; }
    local uuid
    uuid=$(docker run --rm --hostname localhost --entrypoint kafka-storage.sh "$KAFKA_IMAGE" \
        random-uuid) || die "$KAFKA_IMAGE does not run the Kafka tools"
    [[ $uuid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka-storage.sh random-uuid printed '$uuid'"
    docker run --rm "$KAFKA_IMAGE" test -x /etc/kafka/docker/run \
        || die "$KAFKA_IMAGE has no /etc/kafka/docker/run or does not run a command given"
    say "$KAFKA_IMAGE built: $(docker run --rm --entrypoint java "$KAFKA_IMAGE" -version 2>&1 \
        | head -n 1), kafka-storage.sh answers"
}

# docker-compose.yml's kafka environment as NAME=value lines (the service's `environment:` map).
compose_kafka_env() {
    awk '
        /^  [a-z][a-z0-9-]*:/ { in_kafka = ($1 == "kafka:"); in_env = 0; next }
        in_kafka && /^    [a-z_]+:/ { in_env = ($1 == "environment:"); next }
        in_kafka && in_env && /^      [A-Z][A-Z0-9_]*: / {
            name = $1; sub(/:$/, "", name)
            value = $0; sub(/^ *[A-Z0-9_]+: */, "", value); gsub(/^"|"$/, "", value)
            print name "=" value
        }
    ' "$REPO_ROOT/docker-compose.yml"
}

# Wait until the compose file's healthcheck command succeeds inside the container.
kafka_wait_healthy() {
    local name=$1 deadline=$((SECONDS + 120))
    until docker exec "$name" /opt/kafka/bin/kafka-broker-api-versions.sh \
        --bootstrap-server kafka:9092 >/dev/null 2>&1; do
        if [[ $(docker inspect -f '{{.State.Running}}' "$name") != true ]]; then
            docker logs --tail 30 "$name" >&2
            die "the broker exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            docker logs --tail 30 "$name" >&2
            die "the broker did not answer within 120 s"
        fi
        sleep 2
    done
}

kafka_topics_list() {
    docker exec "$1" /opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka:9092 --list \
        | grep -v '^__' | sort
}

# The containers, network and volume of a check-kafka run, removed however it ends.
KAFKA_TEST=""
check_kafka_cleanup() {
    [[ -n $KAFKA_TEST ]] || return 0
    docker rm -f -v "$KAFKA_TEST-kafka" "$KAFKA_TEST-app" >/dev/null 2>&1 || true
    docker network rm "$KAFKA_TEST" >/dev/null 2>&1 || true
    docker volume rm "$KAFKA_TEST-kafka-data" >/dev/null 2>&1 || true
    say "removed $KAFKA_TEST (containers, network, volume)"
}

check_kafka() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || base_image
    docker image inspect "$KAFKA_IMAGE" >/dev/null 2>&1 || kafka_image
    docker image inspect "$APP_IMAGE" >/dev/null 2>&1 || app_image
    local test env=() line
    test=nyc311-test-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
    while IFS= read -r line; do env+=(-e "$line"); done < <(compose_kafka_env)
    ((${#env[@]} >= 20)) || die "could not read the kafka environment from docker-compose.yml"
    [[ " ${env[*]} " == *" CLUSTER_ID="* ]] || die "no CLUSTER_ID in docker-compose.yml's kafka"

    KAFKA_TEST=$test
    trap check_kafka_cleanup EXIT
    trap 'exit 130' INT TERM
    docker network create "$test" >/dev/null
    docker volume create "$test-kafka-data" >/dev/null
    local start=$SECONDS
    say "starting $KAFKA_IMAGE as kafka on network $test" \
        "($((${#env[@]} / 2)) variables from docker-compose.yml)"
    docker run -d --name "$test-kafka" --hostname kafka --network "$test" --network-alias kafka \
        -v "$test-kafka-data:/var/lib/kafka/data" "${env[@]}" "$KAFKA_IMAGE" >/dev/null
    kafka_wait_healthy "$test-kafka"
    say "healthcheck answers after $((SECONDS - start)) s"

    local out created
    # DATABASE_URL as in docker-compose.yml: the settings need one; creating topics never connects.
    out=$(docker run --rm --name "$test-app" --network "$test" \
        -e KAFKA_BOOTSTRAP_SERVERS=kafka:9092 \
        -e DATABASE_URL=postgresql://nyc311:nyc311@postgres:5432/nyc311 \
        "$APP_IMAGE" nyc311 topics create) \
        || die "nyc311 topics create failed"
    say "$APP_IMAGE: $out"
    created=$(sed -n 's/^created [0-9]* topic(s): //p' <<<"$out" | tr -d ' ' | tr ',' '\n' | sort)
    [[ -n $created ]] || die "nyc311 topics create created no topic"
    local listed
    listed=$(kafka_topics_list "$test-kafka")
    [[ -z $(comm -23 <(printf '%s\n' "$created") <(printf '%s\n' "$listed")) ]] \
        || die "kafka-topics.sh --list lacks some of the topics: $(tr '\n' ' ' <<<"$listed")"
    say "kafka-topics.sh --list: $(wc -l <<<"$listed") topics, every one created"

    local stop_start rc
    stop_start=$SECONDS
    docker stop -t 30 "$test-kafka" >/dev/null
    rc=$(docker inspect -f '{{.State.ExitCode}}' "$test-kafka")
    if [[ $rc != 0 && $rc != 143 ]]; then
        docker logs --tail 30 "$test-kafka" >&2
        die "the broker exited $rc on docker stop"
    fi
    ((SECONDS - stop_start < 30)) || die "docker stop took $((SECONDS - stop_start)) s"
    grep -q 'BrokerServer id=[0-9]*\] shut down completed' <<<"$(docker logs "$test-kafka" 2>&1)" \
        || die "the broker's log has no clean shutdown"
    say "docker stop: exit $rc after $((SECONDS - stop_start)) s, the broker shut down cleanly"

    start=$SECONDS
    docker start "$test-kafka" >/dev/null
    kafka_wait_healthy "$test-kafka"
    grep -q 'is formatted already' <<<"$(docker logs "$test-kafka" 2>&1)" \
        || die "the restart did not find the formatted storage on the volume"
    [[ $(kafka_topics_list "$test-kafka") == "$listed" ]] \
        || die "the topics differ after the restart"
    say "restart: healthy after $((SECONDS - start)) s," \
        "storage and $(wc -l <<<"$listed") topics kept"
    say "check-kafka passed"
}

postgres_image() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || base_image
    local log=$REPO_ROOT/build/postgres-image.log started=$SECONDS
    mkdir -p "$REPO_ROOT/build"
    say "building $POSTGRES_IMAGE"
    docker build --network host -q -f "$SCRIPT_DIR/images/postgres.Dockerfile" \
        -t "$POSTGRES_IMAGE" "$SCRIPT_DIR/images" >"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "docker build failed (log: build/postgres-image.log)"; }
    local version
    version=$(docker run --rm "$POSTGRES_IMAGE" postgres --version) \
        || die "$POSTGRES_IMAGE does not run postgres"
    docker run --rm "$POSTGRES_IMAGE" pg_isready --version >/dev/null \
        || die "$POSTGRES_IMAGE has no pg_isready on PATH"
    say "$POSTGRES_IMAGE built in $((SECONDS - started)) s: $version"
}

# The settings docker-compose.yml gives the postgres service and the app's services.
PG_ENV=(-e POSTGRES_USER=nyc311 -e POSTGRES_PASSWORD=nyc311 -e POSTGRES_DB=nyc311)
PG_HEALTHCHECK='pg_isready -h 127.0.0.1 -U nyc311 -d nyc311'
APP_ENV=(-e DATABASE_URL=postgresql://nyc311:nyc311@postgres:5432/nyc311
         -e KAFKA_BOOTSTRAP_SERVERS=unused:9092)

# Waits until the compose file's healthcheck passes inside container $1 (60 s at most).
wait_healthy() {
    local started=$SECONDS
    until docker exec "$1" sh -c "$PG_HEALTHCHECK" >/dev/null 2>&1; do
        if [[ $(docker inspect -f '{{.State.Running}}' "$1") != true ]]; then
            docker logs "$1" >&2 || true
            die "$1 exited"
        fi
        (( SECONDS - started < 60 )) || { docker logs "$1" >&2 || true; die "$1 not healthy in 60 s"; }
        sleep 1
    done
    say "$1 healthy after $((SECONDS - started)) s ($PG_HEALTHCHECK)"
}

# What the migrations made, on one line: the head (nyc311.alembic_version, the default
# NYC311_DB_SCHEMA) and every table outside PostgreSQL's own schemas.
schema_of() {
    docker exec "$1" psql -X -At -U nyc311 -d nyc311 -c \
        "SELECT (SELECT string_agg(version_num, ',') FROM nyc311.alembic_version) || ' ' ||
                (SELECT string_agg(table_schema || '.' || table_name, ','
                                   ORDER BY table_schema, table_name)
                   FROM information_schema.tables
                  WHERE table_schema NOT IN ('pg_catalog', 'information_schema'))"
}

check_postgres() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local started=$SECONDS
    docker image inspect "$POSTGRES_IMAGE" >/dev/null 2>&1 || postgres_image
    docker image inspect "$APP_IMAGE" >/dev/null 2>&1 || app_image
    local run=nyc311-check-postgres-$$
    local net=$run db=$run-db vol=$run-data
    # shellcheck disable=SC2064  # the names are fixed now
    trap "docker rm -f $db >/dev/null 2>&1; docker volume rm $vol >/dev/null 2>&1;
          docker network rm $net >/dev/null 2>&1; true" EXIT
    docker network create "$net" >/dev/null
    docker volume create "$vol" >/dev/null
    say "starting $db (hostname postgres, volume $vol at /var/lib/postgresql/data)"
    docker run -d --name "$db" --hostname postgres --network "$net" --network-alias postgres \
        "${PG_ENV[@]}" -v "$vol:/var/lib/postgresql/data" "$POSTGRES_IMAGE" >/dev/null
    wait_healthy "$db"
    local owner
    owner=$(docker exec "$db" stat -c '%U %a' /var/lib/postgresql/data)
    [[ $owner == "postgres 700" ]] || die "PGDATA is '$owner', not 'postgres 700'"
    [[ $(docker exec "$db" stat -c %U /proc/1) == postgres ]] || die "PID 1 does not run as postgres"

    app() { docker run --rm --network "$net" "${APP_ENV[@]}" "$APP_IMAGE" "$@"; }
    say "nyc311 db upgrade"
    app nyc311 db upgrade >&2 || die "nyc311 db upgrade failed"
    say "nyc311 db summary"
    app nyc311 db summary >&2 || die "nyc311 db summary failed"
    local refused
    refused=$(app python -c \
        "import psycopg; psycopg.connect('postgresql://nyc311:wrong@postgres:5432/nyc311')" 2>&1) \
        && die "a wrong password was accepted"
    [[ $refused == *'password authentication failed'* ]] \
        || { printf '%s\n' "$refused" >&2; die "a wrong password failed for another reason"; }
    say "a wrong password over TCP is refused (scram-sha-256)"
    local before after took tables
    before=$(schema_of "$db")
    [[ $before == *' '?* ]] || die "no schema after nyc311 db upgrade: '$before'"
    tables=${before#* }
    say "head ${before%% *}, $(tr ',' '\n' <<<"$tables" | wc -l) tables"

    took=$SECONDS
    docker stop -t 30 "$db" >/dev/null
    took=$((SECONDS - took))
    local code
    code=$(docker inspect -f '{{.State.ExitCode}}' "$db")
    [[ $code == 0 ]] || { docker logs "$db" >&2; die "postgres exited with $code on docker stop"; }
    docker logs "$db" 2>&1 | grep -q 'fast shutdown request' \
        && docker logs "$db" 2>&1 | grep -q 'database system is shut down' \
        || { docker logs "$db" >&2; die "no clean fast shutdown in the log"; }
    (( took <= 5 )) || die "docker stop took $took s"
    say "docker stop: a fast shutdown, exit 0, $took s"

    docker start "$db" >/dev/null
    wait_healthy "$db"
    after=$(schema_of "$db")
    [[ $after == "$before" ]] || die "the schema changed across the restart: '$before' -> '$after'"
    app nyc311 db summary >/dev/null || die "nyc311 db summary failed after the restart"
    say "schema kept across the restart (head ${before%% *})"

    # SIGTERM too (what a plain `kill` or an engine ignoring STOPSIGNAL sends): a smart shutdown,
    # prompt with no client connected.
    took=$SECONDS
    docker kill -s TERM "$db" >/dev/null
    code=$(timeout 10 docker wait "$db") || die "postgres still runs 10 s after SIGTERM"
    took=$((SECONDS - took))
    [[ $code == 0 ]] || { docker logs "$db" >&2; die "postgres exited with $code on SIGTERM"; }
    docker logs "$db" 2>&1 | grep -q 'smart shutdown request' \
        || { docker logs "$db" >&2; die "no smart shutdown in the log"; }
    say "SIGTERM: a smart shutdown, exit 0, $took s"
    say "check-postgres passed in $((SECONDS - started)) s"
}

# tests/backends.py's labels: nyc311.test=1, and the host, pid and start time (field 22 of
# /proc/<pid>/stat) of the test process that owns the container or network.
test_run_gone() {
    local host=$1 pid=$2 started=$3 stat
    [[ $host == "$(uname -n)" && $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    read -r -a stat <<<"$stat"
    [[ -n $started && -n ${stat[19]:-} && ${stat[19]} != "$started" ]]
}

test_clean() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local format='{{index .Labels "nyc311.test.host"}} {{index .Labels "nyc311.test.pid"}}'
    format+=' {{index .Labels "nyc311.test.started"}}'
    local kind id host pid started removed=0 kept=0
    for kind in container network; do
        while read -r id; do
            [[ -n $id ]] || continue
            if [[ $kind == container ]]; then
                read -r host pid started < <(docker inspect -f "${format//.Labels/.Config.Labels}" "$id")
            else
                read -r host pid started < <(docker network inspect -f "$format" "$id")
            fi
            if test_run_gone "$host" "$pid" "${started:-}"; then
                if [[ $kind == container ]]; then
                    docker rm -f -v "$id" >/dev/null
                else
                    docker network rm "$id" >/dev/null
                fi
                say "removed $kind $id (test process $pid on $host is gone)"
                removed=$((removed + 1))
            else
                kept=$((kept + 1))
            fi
        done < <(if [[ $kind == container ]]; then
                     docker ps -aq --filter label=nyc311.test=1
                 else
                     docker network ls -q --filter label=nyc311.test=1
                 fi)
    done
    say "test-clean: $removed removed, $kept kept (running, or of another host)"
}

case ${1:-} in
    engine-up) engine_up ;;
    engine-down) engine_down ;;
    engine-env) printf 'export DOCKER_HOST=%s\n' "$(engine_host)" ;;
    base-image) base_image ;;
    app-image) app_image ;;
    kafka-image) kafka_image ;;
    check-kafka) check_kafka ;;
    postgres-image) postgres_image ;;
    images) base_image; app_image; kafka_image; postgres_image ;;
    check-postgres) check_postgres ;;
    test-clean) test_clean ;;
    *) sed -n '2,/^set -euo pipefail/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 2 ;;
esac
