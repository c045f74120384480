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
#   deploy/docker.sh images        base-image, then app-image, kafka-image, postgres-image,
#                                  s3-image, prometheus-image and mail-image
#   deploy/docker.sh checks [compose] [backend]
#                                  the Docker checks of `make test` (both when none is named):
#                                  the compose stack end to end (tests/compose/) and the
#                                  integration tests of consumers/ and reports/ on testcontainers;
#                                  starts an engine when none answers (stopped again at the end)
#                                  and builds the images first. NYC311_DOCKER=auto|yes|no: auto
#                                  skips them where no engine answers and none can be started
#   deploy/docker.sh check-postgres
#                                  nyc311-postgres:local as compose runs it, on a network and a
#                                  volume of its own: the healthcheck, `nyc311 db upgrade` and
#                                  `db summary` from nyc311-pipeline:local, a wrong password
#                                  refused, docker stop (prompt and clean), the schema still there
#                                  after a restart; containers, network and volume removed after
#   deploy/docker.sh s3-image      nyc311-s3:local from deploy/images/s3.Dockerfile, the stand-in
#                                  for both MINIO_IMAGE and MINIO_MC_IMAGE: moto's S3 server
#                                  (moto[server] wheels built on this host in build/s3-wheels)
#                                  started by MinIO's `server /data --console-address :9001` on
#                                  :9000, and an `mc` with what compose runs (ready, alias set,
#                                  mb, anonymous set download). moto keeps the objects in memory
#                                  and accepts any credentials on a signed request
#   deploy/docker.sh prometheus-image
#                                  nyc311-prometheus:local from deploy/images/prometheus.Dockerfile:
#                                  Debian's Prometheus 2.42, wget and promtool under
#                                  prom/prometheus's contract (config, /prometheus volume, :9090,
#                                  user nobody); for PROMETHEUS_IMAGE in compose
#   deploy/docker.sh mail-image    nyc311-mail:local from deploy/images/mail.Dockerfile, a mail
#                                  catcher: Debian's aiosmtpd taking plain SMTP on :1025 into the
#                                  Maildir /var/mail/catcher; its HEALTHCHECK is an SMTP greeting
#                                  (python3 -c "import smtplib; smtplib.SMTP('127.0.0.1', 1025,
#                                  timeout=5).quit()")
#   deploy/docker.sh check-standins
#                                  the three as docker-compose.yml runs them (its commands,
#                                  environment, volumes and healthchecks), on a network of their
#                                  own: minio healthy, minio-setup twice, the aggregator's S3 code
#                                  from nyc311-pipeline:local publishing and the site read without
#                                  credentials; prometheus ready on the repository's configuration
#                                  (promtool, its scrape jobs loaded); a message from the app
#                                  image in the catcher's Maildir; each stopped promptly (builds
#                                  missing images first; removes what it made however it ends)
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
S3_IMAGE=nyc311-s3:local
PROMETHEUS_IMAGE=nyc311-prometheus:local
MAIL_IMAGE=nyc311-mail:local
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

# build_image IMAGE DOCKERFILE CONTEXT: `docker build` of deploy/images/DOCKERFILE (on the base
# image, built first when missing), quiet, its output in build/<dockerfile's stem>-image.log.
build_image() {
    local image=$1 dockerfile=$2 context=$3 log
    log=$REPO_ROOT/build/${dockerfile%.Dockerfile}-image.log
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || base_image
    mkdir -p "$REPO_ROOT/build"
    say "building $image"
    docker build --network host -q -f "$SCRIPT_DIR/images/$dockerfile" -t "$image" \
        "$context" >"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "docker build failed (log: ${log#"$REPO_ROOT"/})"; }
}

postgres_image() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local started=$SECONDS
    build_image "$POSTGRES_IMAGE" postgres.Dockerfile "$SCRIPT_DIR/images"
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

# The host's Python (the virtualenv's when there is one): it builds wheelhouses, and with PyYAML
# it reads docker-compose.yml for the checks.
host_python() {
    local python=$REPO_ROOT/.venv/bin/python
    [[ -x $python ]] || python=python3
    printf '%s\n' "$python"
}

s3_image() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local wheels=$REPO_ROOT/build/s3-wheels started=$SECONDS
    local python moto='moto[server]' version
    python=$(host_python)
    # The moto the project's tests run, when the virtualenv has it.
    if version=$("$python" -c 'import importlib.metadata as m; print(m.version("moto"))' \
        2>/dev/null); then
        moto="moto[server]==$version"
    fi
    say "building the wheelhouse in build/s3-wheels ($moto and its dependencies)"
    rm -rf "$wheels" && mkdir -p "$wheels"
    "$python" -m pip wheel -q -w "$wheels" "$moto" >"$wheels.log" 2>&1 \
        || { tail -n 30 "$wheels.log" >&2; die "pip wheel failed (log: build/s3-wheels.log)"; }
    build_image "$S3_IMAGE" s3.Dockerfile "$REPO_ROOT"
    # The server as compose starts it, and the healthcheck, in one container.
    local out
    out=$(docker run --rm -i --entrypoint sh "$S3_IMAGE" -s <<'EOF' 2>&1
s3-entrypoint.sh server /data --console-address :9001 >/tmp/server.log 2>&1 &
for _ in $(seq 1 60); do
    if mc ready local; then python3 -c 'import moto; print("moto", moto.__version__)'; exit 0; fi
    sleep 0.5
done
cat /tmp/server.log
exit 1
EOF
) || { printf '%s\n' "$out" >&2; die "$S3_IMAGE: the server did not answer \`mc ready local\`"; }
    say "$S3_IMAGE built in $((SECONDS - started)) s: ${out##*$'\n'}, \`mc ready local\` answers"
}

prometheus_image() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local started=$SECONDS
    build_image "$PROMETHEUS_IMAGE" prometheus.Dockerfile "$SCRIPT_DIR/images"
    local version checked
    version=$(docker run --rm "$PROMETHEUS_IMAGE" --version 2>&1 | head -n 1) \
        || die "$PROMETHEUS_IMAGE does not run prometheus"
    checked=$(docker run --rm --entrypoint promtool \
        -v "$REPO_ROOT/deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" \
        "$PROMETHEUS_IMAGE" check config /etc/prometheus/prometheus.yml 2>&1) \
        || { printf '%s\n' "$checked" >&2; die "promtool rejects the repository's configuration"; }
    docker run --rm --entrypoint wget "$PROMETHEUS_IMAGE" --version >/dev/null \
        || die "$PROMETHEUS_IMAGE has no wget for compose's healthcheck"
    say "$PROMETHEUS_IMAGE built in $((SECONDS - started)) s: ${version%% (*}," \
        "promtool accepts deploy/prometheus/prometheus.yml"
}

mail_image() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local started=$SECONDS
    build_image "$MAIL_IMAGE" mail.Dockerfile "$SCRIPT_DIR/images"
    # The image's command in the background, one message sent to it, the Maildir counted.
    local out cmd
    cmd=$(docker image inspect -f '{{join .Config.Cmd " "}}' "$MAIL_IMAGE")
    out=$(docker run --rm -i -e CMD="$cmd" "$MAIL_IMAGE" sh -s <<'EOF' 2>&1
$CMD >/tmp/server.log 2>&1 &
python3 - <<'PY' || { cat /tmp/server.log; exit 1; }
import smtplib, time
for _ in range(100):
    try:
        smtp = smtplib.SMTP("127.0.0.1", 1025, timeout=5)
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("nothing listens on port 1025")
smtp.sendmail("probe@example.com", ["catcher@example.com"], "Subject: probe\r\n\r\nprobe\r\n")
smtp.quit()
PY
echo "$(ls /var/mail/catcher/new | wc -l) message(s) in /var/mail/catcher/new"
EOF
) || { printf '%s\n' "$out" >&2; die "$MAIL_IMAGE did not take a message"; }
    [[ ${out##*$'\n'} == "1 message(s) in /var/mail/catcher/new" ]] \
        || { printf '%s\n' "$out" >&2; die "$MAIL_IMAGE: the message is not in the Maildir"; }
    say "$MAIL_IMAGE built in $((SECONDS - started)) s: SMTP on :1025, ${out##*$'\n'}"
}

# Prints a field of a docker-compose.yml service, each item NUL-terminated: a list's elements, a
# mapping's NAME=value pairs, a string. Interpolated as `docker compose up` does with none of the
# variables set: ${NAME:-default} is the default, $$ a plain $.
compose_field() {
    "$COMPOSE_PYTHON" - "$REPO_ROOT/docker-compose.yml" "$@" <<'EOF'
import re
import sys

import yaml

node = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))["services"]
for key in sys.argv[2:]:
    node = node[key]
NAME = r"[A-Za-z_][A-Za-z0-9_]*"
VARIABLE = re.compile(rf"\$\$|\$\{{{NAME}(?::?-([^}}]*))?\}}|\${NAME}")


def plain(value):
    return VARIABLE.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(1) or ""), str(value))


items = ([f"{k}={plain(v)}" for k, v in node.items()] if isinstance(node, dict)
         else [plain(v) for v in node] if isinstance(node, list) else [plain(node)])
sys.stdout.write("".join(item + "\0" for item in items))
EOF
}

# A compose healthcheck's test as a command for docker exec: CMD's words, CMD-SHELL in sh -c.
healthcheck_command() {
    local words=()
    mapfile -d '' -t words < <(compose_field "$1" healthcheck test)
    case ${words[0]:-} in
        CMD) printf '%s\0' "${words[@]:1}" ;;
        CMD-SHELL) printf '%s\0' sh -c "${words[1]}" ;;
        *) die "$1's healthcheck test is not CMD or CMD-SHELL" ;;
    esac
}

# docker run's -v for a compose service's volumes: ./paths from the checkout, named volumes
# prefixed with the check's name.
compose_volumes() {
    local volume volumes=()
    mapfile -d '' -t volumes < <(compose_field "$1" volumes)
    for volume in "${volumes[@]}"; do
        if [[ $volume == ./* ]]; then
            printf '%s\0' -v "$REPO_ROOT/${volume#./}"
        else
            printf '%s\0' -v "$STANDINS_RUN-$volume"
        fi
    done
}

# The named volumes among docker run's -v arguments, to be removed after the check.
STANDINS_VOLUMES=()
remember_volumes() {
    local arg
    for arg in "$@"; do
        if [[ $arg == "$STANDINS_RUN-"* ]]; then STANDINS_VOLUMES+=("${arg%%:*}"); fi
    done
}

# Waits until the command after the container's name succeeds in it (60 s at most).
wait_exec() {
    local name=$1 started=$SECONDS
    shift
    until docker exec "$name" "$@" >/dev/null 2>&1; do
        if [[ $(docker inspect -f '{{.State.Running}}' "$name") != true ]]; then
            docker logs --tail 30 "$name" >&2 || true
            die "$name exited"
        fi
        (( SECONDS - started < 60 )) \
            || { docker logs --tail 30 "$name" >&2 || true; die "$name: '$*' failed for 60 s"; }
        sleep 1
    done
    say "$name healthy after $((SECONDS - started)) s ($*)"
}

# docker stop on container $1: it must end within $2 s with one of the exit codes after.
stop_promptly() {
    local name=$1 limit=$2 took=$SECONDS code
    shift 2
    docker stop -t 30 "$name" >/dev/null
    took=$((SECONDS - took))
    code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
    [[ " $* " == *" $code "* ]] || { docker logs --tail 30 "$name" >&2; die "$name exited $code"; }
    (( took <= limit )) || die "docker stop took $took s for $name"
    say "docker stop: $name exited $code after $took s"
}

# The containers, network and volumes of a check-standins run, removed however it ends.
STANDINS_RUN=""
check_standins_cleanup() {
    [[ -n $STANDINS_RUN ]] || return 0
    docker rm -f -v "$STANDINS_RUN-minio" "$STANDINS_RUN-prometheus" "$STANDINS_RUN-mail" \
        >/dev/null 2>&1 || true
    local volume
    for volume in "${STANDINS_VOLUMES[@]}"; do
        docker volume rm "$volume" >/dev/null 2>&1 || true
    done
    docker network rm "$STANDINS_RUN" >/dev/null 2>&1 || true
    say "removed $STANDINS_RUN (containers, network, volumes)"
}

# minio and minio-setup of docker-compose.yml on nyc311-s3:local, then the aggregator's S3 code.
check_s3() {
    local net=$STANDINS_RUN name=$STANDINS_RUN-minio
    local command=() env=() setup_entrypoint=() setup_command=() setup_env=() health=()
    local volumes=() app_env=() line
    mapfile -d '' -t command < <(compose_field minio command)
    mapfile -d '' -t setup_entrypoint < <(compose_field minio-setup entrypoint)
    mapfile -d '' -t setup_command < <(compose_field minio-setup command)
    mapfile -d '' -t health < <(healthcheck_command minio)
    mapfile -d '' -t volumes < <(compose_volumes minio)
    while IFS= read -r -d '' line; do env+=(-e "$line"); done < <(compose_field minio environment)
    while IFS= read -r -d '' line; do setup_env+=(-e "$line"); done \
        < <(compose_field minio-setup environment)
    while IFS= read -r -d '' line; do app_env+=(-e "$line"); done \
        < <(compose_field aggregator environment)
    ((${#command[@]} && ${#setup_command[@]} && ${#health[@]} && ${#env[@]} && ${#app_env[@]})) \
        || die "could not read minio, minio-setup and aggregator from docker-compose.yml"
    remember_volumes "${volumes[@]}"

    say "starting $S3_IMAGE as minio: ${command[*]}"
    docker run -d --name "$name" --hostname minio --network "$net" --network-alias minio \
        "${env[@]}" "${volumes[@]}" "$S3_IMAGE" "${command[@]}" >/dev/null
    wait_exec "$name" "${health[@]}"

    local round out
    for round in first second; do
        out=$(docker run --rm --network "$net" "${setup_env[@]}" \
            --entrypoint "${setup_entrypoint[0]}" "$S3_IMAGE" "${setup_entrypoint[@]:1}" \
            "${setup_command[@]}" 2>&1) \
            || { printf '%s\n' "$out" >&2; die "minio-setup failed the $round time"; }
        say "minio-setup ($round run): $(tr '\n' ' ' <<<"$out")"
    done

    # The aggregator's settings and S3 code (reports/) from the app image: the marker claimed
    # with a conditional PUT, a publication, again with nothing to send, the site read without
    # credentials through the policy minio-setup set (and refused where no policy allows it).
    say "publishing from $APP_IMAGE with the aggregator's environment"
    out=$(docker run --rm -i --network "$net" "${app_env[@]}" "$APP_IMAGE" python - <<'EOF' 2>&1
import urllib.error
import urllib.request

import boto3

from nyc311.settings import load_settings
from reports.output import PublicationTargetError, SiteOwner, claim_target
from reports.s3 import parse_s3_target, publish_tree, read_object

settings = load_settings()
target, endpoint = settings.publish_target, settings.s3_endpoint_url
where = {"endpoint_url": endpoint, "region": settings.aws_region}
bucket = parse_s3_target(target).bucket
owner = SiteOwner("nyc311", "nyc311", settings.published_schema)
claim_target(settings, owner, target)
claim_target(settings, owner, target)  # its own marker: accepted
try:
    claim_target(settings, SiteOwner("nyc311", "other", "published"), target)
    raise SystemExit("another projection's claim was accepted")
except PublicationTargetError:
    pass
files = {"index.html": b"<h1>NYC 311</h1>\n", "2026-10/index.html": b"<p>October</p>\n",
         "2026-10/requests.csv": b"agency,requests\nDSNY,1\n"}
first = publish_tree(files, target, **where)
second = publish_tree(files, target, **where)
assert len(first.uploaded) == 3 and len(second.unchanged) == 3, (first, second)
assert read_object(target, "2026-10/requests.csv", **where) == files["2026-10/requests.csv"]
page = urllib.request.urlopen(f"{endpoint}/{bucket}/index.html", timeout=10)
assert page.read() == files["index.html"], "the anonymous GET read other bytes"
assert page.headers["Content-Type"] == "text/html; charset=utf-8", page.headers["Content-Type"]

s3 = boto3.client("s3", endpoint_url=endpoint, region_name=settings.aws_region)
s3.create_bucket(Bucket="nyc311-check-private")
s3.put_object(Bucket="nyc311-check-private", Key="secret.txt", Body=b"secret")
try:
    urllib.request.urlopen(f"{endpoint}/nyc311-check-private/secret.txt", timeout=10)
    raise SystemExit("an object of a bucket with no policy was read without credentials")
except urllib.error.HTTPError as exc:
    assert exc.code == 403, exc.code
wrong = boto3.client("s3", endpoint_url=endpoint, region_name=settings.aws_region,
                     aws_access_key_id="wrong", aws_secret_access_key="wrong")
try:
    wrong.get_object(Bucket="nyc311-check-private", Key="secret.txt")
    credentials = "moto checks no signature: wrong credentials are accepted too"
except Exception:
    credentials = "wrong credentials are refused"
print(f"claimed {target}; {first}; again: {second}")
print(f"anonymous GET /{bucket}/index.html: 200; a bucket with no policy: 403; {credentials}")
EOF
) || { printf '%s\n' "$out" >&2; die "publishing to $S3_IMAGE from $APP_IMAGE failed"; }
    while IFS= read -r line; do say "$line"; done <<<"$out"
    stop_promptly "$name" 5 0
}

# prometheus of docker-compose.yml on nyc311-prometheus:local with the repository's configuration.
check_prometheus() {
    local net=$STANDINS_RUN name=$STANDINS_RUN-prometheus health=() volumes=()
    mapfile -d '' -t health < <(healthcheck_command prometheus)
    mapfile -d '' -t volumes < <(compose_volumes prometheus)
    ((${#health[@]} && ${#volumes[@]})) || die "could not read prometheus from docker-compose.yml"
    remember_volumes "${volumes[@]}"
    [[ " ${volumes[*]} " == *":/etc/prometheus/prometheus.yml:ro "* ]] \
        || die "docker-compose.yml no longer mounts the configuration read-only"

    say "starting $PROMETHEUS_IMAGE as prometheus (${volumes[*]})"
    docker run -d --name "$name" --hostname prometheus --network "$net" \
        --network-alias prometheus "${volumes[@]}" "$PROMETHEUS_IMAGE" >/dev/null
    wait_exec "$name" "${health[@]}"
    local out
    out=$(docker exec "$name" promtool check config /etc/prometheus/prometheus.yml 2>&1) \
        || { printf '%s\n' "$out" >&2; die "promtool check config failed"; }
    say "promtool check config: ${out##*SUCCESS: }"
    [[ $(docker exec "$name" stat -c %U /proc/1) == nobody ]] || die "PID 1 does not run as nobody"
    docker exec "$name" test -d /prometheus/wal || die "no TSDB (/prometheus/wal) on the volume"

    # The scrape jobs Prometheus loaded are those of deploy/prometheus/prometheus.yml (the
    # targets show up within a few seconds of starting: discovery updates come every 5 s).
    local loaded wanted started=$SECONDS
    wanted=$("$COMPOSE_PYTHON" -c 'import sys, yaml
config = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
print(" ".join(sorted(job["job_name"] for job in config["scrape_configs"])))' \
        "$REPO_ROOT/deploy/prometheus/prometheus.yml")
    [[ -n $wanted ]] || die "no scrape job in deploy/prometheus/prometheus.yml"
    until loaded=$(docker exec "$name" wget -q -O - http://127.0.0.1:9090/api/v1/targets \
        | "$COMPOSE_PYTHON" -c 'import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
print(" ".join(sorted({target["labels"]["job"] for target in targets})))') \
        && [[ $loaded == "$wanted" ]]; do
        (( SECONDS - started < 30 )) \
            || die "Prometheus scrapes '$loaded', deploy/prometheus/prometheus.yml has '$wanted'"
        sleep 1
    done
    say "running as nobody, TSDB on the volume, scrape jobs: $loaded"
    stop_promptly "$name" 5 0
}

# nyc311-mail:local on the network: its healthcheck, then a message from the app image's Python
# found in the Maildir.
check_mail() {
    local net=$STANDINS_RUN name=$STANDINS_RUN-mail started=$SECONDS
    say "starting $MAIL_IMAGE as mail"
    docker run -d --name "$name" --hostname mail --network "$net" --network-alias mail \
        "$MAIL_IMAGE" >/dev/null
    until [[ $(docker inspect -f '{{.State.Health.Status}}' "$name") == healthy ]]; do
        [[ $(docker inspect -f '{{.State.Running}}' "$name") == true ]] \
            || { docker logs "$name" >&2; die "$name exited"; }
        (( SECONDS - started < 60 )) \
            || { docker logs "$name" >&2; die "$name not healthy in 60 s"; }
        sleep 1
    done
    say "$name healthy after $((SECONDS - started)) s (the image's HEALTHCHECK)"
    local subject out
    subject="check-standins $STANDINS_RUN"
    out=$(docker run --rm -i --network "$net" -e SUBJECT="$subject" "$APP_IMAGE" python - \
        <<'EOF' 2>&1
import os
import smtplib
from email.message import EmailMessage

message = EmailMessage()
message["From"], message["To"] = "surveys@example.com", "resident@example.com"
message["Subject"] = os.environ["SUBJECT"]
message.set_content("How did we do?")
with smtplib.SMTP("mail", 1025, timeout=10) as smtp:
    refused = smtp.send_message(message)
assert not refused, refused
EOF
) || { printf '%s\n' "$out" >&2; die "sending to the mail catcher failed"; }
    local files
    files=$(docker exec "$name" grep -l -x -F "Subject: $subject" -r /var/mail/catcher/new) \
        || die "the message is not in /var/mail/catcher/new"
    say "smtplib from $APP_IMAGE to mail:1025: delivered to ${files//$'\n'/ }"
    stop_promptly "$name" 5 0
}

check_standins() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local started=$SECONDS
    COMPOSE_PYTHON=$(host_python)
    "$COMPOSE_PYTHON" -c 'import yaml' 2>/dev/null \
        || die "reading docker-compose.yml needs PyYAML in $COMPOSE_PYTHON (make install)"
    docker image inspect "$S3_IMAGE" >/dev/null 2>&1 || s3_image
    docker image inspect "$PROMETHEUS_IMAGE" >/dev/null 2>&1 || prometheus_image
    docker image inspect "$MAIL_IMAGE" >/dev/null 2>&1 || mail_image
    docker image inspect "$APP_IMAGE" >/dev/null 2>&1 || app_image
    STANDINS_RUN=nyc311-check-standins-$$
    trap check_standins_cleanup EXIT
    trap 'exit 130' INT TERM
    docker network create "$STANDINS_RUN" >/dev/null
    check_s3
    check_prometheus
    check_mail
    say "check-standins passed in $((SECONDS - started)) s"
}

# `make compose-test` and the Docker part of `make test`. With NYC311_DOCKER=auto (the default)
# a machine where no engine answers and none can be started (not root) skips the checks, saying
# so; NYC311_DOCKER=yes makes that an error, NYC311_DOCKER=no skips them. An engine this run
# starts is stopped when it ends; one that was running already is left as it was.
#   compose    the stack of docker-compose.yml end to end (tests/compose/)
#   backend    the integration tests of consumers/ and reports/ on testcontainers
run_checks() {
    local want=${NYC311_DOCKER:-auto} started=0 host pytest=$REPO_ROOT/.venv/bin/pytest
    case $want in
        no) say "NYC311_DOCKER=no: the Docker checks are skipped"; return 0 ;;
        auto|yes) ;;
        *) die "NYC311_DOCKER=$want: expected auto, yes or no" ;;
    esac
    local parts=("$@") part
    ((${#parts[@]})) || parts=(compose backend)
    for part in "${parts[@]}"; do
        [[ $part == compose || $part == backend ]] || die "unknown check '$part' (compose, backend)"
    done
    [[ -x $pytest ]] || die "no .venv/bin/pytest: run make install first"
    host=$(engine_host)
    if ! { command -v docker >/dev/null && answers "$host"; }; then
        local why=""
        if [[ -n ${DOCKER_HOST:-} ]]; then why="DOCKER_HOST=$DOCKER_HOST does not answer"
        elif [[ $(id -u) != 0 ]]; then why="no Docker engine answers and starting one needs root"
        fi
        if [[ -n $why ]]; then
            [[ $want == yes ]] && die "$why"
            say "$why: the Docker checks are skipped (NYC311_DOCKER=yes makes this an error)"
            return 0
        fi
        started=1
    fi
    engine_up >/dev/null
    ((started)) && trap engine_down EXIT
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    all_images
    for part in "${parts[@]}"; do
        case $part in
            compose)
                say "the stack of docker-compose.yml end to end (tests/compose)"
                (cd "$REPO_ROOT" && NYC311_COMPOSE_TEST=1 "$pytest" tests/compose) ;;
            backend)
                say "consumers/ and reports/ integration tests on testcontainers"
                (cd "$REPO_ROOT" && NYC311_TEST_BACKEND=docker "$pytest" tests/consumers \
                    tests/reports) ;;
        esac
    done
}

all_images() {
    base_image; app_image; kafka_image; postgres_image; s3_image; prometheus_image; mail_image
}

# What a killed test run left: tests/backends.py's remove_leftovers, the same rule the next
# Docker-backend run applies at its start (the labels nyc311.test=1 and the owning process's
# host, pid and start time; running runs' and other hosts' are kept). Needs the virtualenv.
test_clean() {
    export DOCKER_HOST
    DOCKER_HOST=$(engine_host)
    local python=$REPO_ROOT/.venv/bin/python
    [[ -x $python ]] || die "no .venv/bin/python: run make install first"
    (cd "$REPO_ROOT" && "$python" - <<'EOF'
import docker

from tests.backends import remove_leftovers

removed = remove_leftovers(docker.from_env())
for name in removed:
    print(f"docker: removed {name} (its test process is gone)")
print(f"docker: test-clean: {len(removed)} removed")
EOF
    ) >&2
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
    images) all_images ;;
    checks) shift; run_checks "$@" ;;
    check-postgres) check_postgres ;;
    s3-image) s3_image ;;
    prometheus-image) prometheus_image ;;
    mail-image) mail_image ;;
    check-standins) check_standins ;;
    test-clean) test_clean ;;
    *) sed -n '2,/^set -euo pipefail/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 2 ;;
esac
