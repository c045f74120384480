#!/usr/bin/env bash
# Local Kafka broker and PostgreSQL server for development and tests, without Docker.
#
#   services/services.sh up                 start both (idempotent), write .env.services
#   services/services.sh down [--purge]     stop both, remove .env.services (--purge: and their data)
#   services/services.sh status             show what runs where
#   services/services.sh restart-kafka      stop + start the broker, keeping its data
#   services/services.sh restart-postgres   stop + start the database server, keeping its data
#   services/services.sh stop-kafka | start-kafka | stop-postgres | start-postgres
#   services/services.sh check-port VARIABLE PORT [WHAT]
#                                           exit 1 with a message naming VARIABLE when PORT is
#                                           taken (demo/run.sh checks its servers' ports so)
#   services/services.sh kafka-tool CLASS [ARGS...]   run a Kafka command-line tool, e.g.
#       kafka-tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
#           --bootstrap-server 127.0.0.1:19092 --describe --all-groups
#     or with a short name: topics, consumer-groups, console-consumer, console-producer,
#     get-offsets, transactions, broker-api-versions, metadata-quorum, storage, dump-log
#
# A port that another process holds (Kafka's, PostgreSQL's, while this checkout's own server is
# not the one running) stops `up` before anything starts, with one line naming the port, who
# holds it when `ss` can tell, and the variable that picks another: never a stale or foreign
# server answering in place of ours. `up` while this checkout's own servers run does nothing.
#
# Kafka (KRaft, one node, broker and controller in one JVM) runs from jars that Maven resolves
# once into a cache outside the repository (see services/kafka/pom.xml). PostgreSQL is Debian's
# package, installed with apt-get when missing; this script runs its own throwaway cluster with
# its own data directory and port and never touches any other server.
#
# Environment:
#   NYC311_KAFKA_PORT              broker port (default 19092)
#   NYC311_KAFKA_CONTROLLER_PORT   KRaft controller port (default 19093)
#   NYC311_PG_PORT                 PostgreSQL port (default 55432)
#   NYC311_SERVICES_DIR            state directory: Kafka data, logs and pid, the PostgreSQL data
#                                  (or a link to it), the lock (default .services). Another
#                                  directory and other ports give a second, independent instance
#                                  that can be stopped and restarted without touching the first.
#   NYC311_ENV_OUT                 the env file `up` writes and `down` removes (default
#                                  .env.services; with NYC311_SERVICES_DIR set, .env.services
#                                  inside that directory)
#   NYC311_CACHE_DIR               jar cache (default ${XDG_CACHE_HOME:-~/.cache}/nyc311)
#   NYC311_KAFKA_HEAP_OPTS         broker JVM heap (default "-Xms512m -Xmx2g")
#   NYC311_START_TIMEOUT           seconds to wait for a server to answer (default 90)
#   NYC311_STOP_TIMEOUT            seconds to wait for a graceful stop before killing (default 60)
#   NYC311_PG_BINDIR               PostgreSQL binaries (default: newest /usr/lib/postgresql/*/bin)
#   KAFKA_BOOTSTRAP_SERVERS + DATABASE_URL
#                                  when both are set, `up` starts nothing: those servers are used.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
STATE_DIR=${NYC311_SERVICES_DIR:-$REPO_ROOT/.services}
[[ $STATE_DIR == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
# A second instance never overwrites the default instance's .env.services unless told to.
if [[ -n ${NYC311_SERVICES_DIR:-} ]]; then
    ENV_FILE=${NYC311_ENV_OUT:-$STATE_DIR/.env.services}
else
    ENV_FILE=${NYC311_ENV_OUT:-$REPO_ROOT/.env.services}
fi

KAFKA_PORT=${NYC311_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${NYC311_KAFKA_CONTROLLER_PORT:-19093}
PG_PORT=${NYC311_PG_PORT:-55432}
START_TIMEOUT=${NYC311_START_TIMEOUT:-90}
STOP_TIMEOUT=${NYC311_STOP_TIMEOUT:-60}
KAFKA_HEAP_OPTS=${NYC311_KAFKA_HEAP_OPTS:--Xms512m -Xmx2g}

DB_USER=nyc311
DB_PASSWORD=nyc311
DB_NAME=nyc311

KAFKA_SRC="$SCRIPT_DIR/kafka"
KAFKA_STATE="$STATE_DIR/kafka"
KAFKA_CONFIG="$KAFKA_STATE/server.properties"
KAFKA_DATA="$KAFKA_STATE/data"
KAFKA_LOG="$KAFKA_STATE/logs/server.log"
KAFKA_PIDFILE="$KAFKA_STATE/kafka.pid"
CACHE_ROOT=${NYC311_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nyc311}

say() { printf 'services: %s\n' "$*" >&2; }
die() {
    printf 'services: error: %s\n' "$*" >&2
    exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when a server could not listen on 127.0.0.1:$1: something accepts connections there, or
# holds the port bound without listening (a bind test, as servers bind: with SO_REUSEADDR, so a
# connection in TIME_WAIT does not count).
port_taken() {
    local port=$1 py
    port_open "$port" && return 0
    py=$(command -v python3 || true)
    [[ -n $py ]] || return 1
    ! "$py" - "$port" 2>/dev/null <<'PY'
import socket
import sys

sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    sock.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    sock.close()
PY
}

# " (pid N, NAME)" of the process listening on port $1 when ss can tell, else nothing.
port_holder() {
    local line
    command -v ss >/dev/null 2>&1 || return 0
    line=$(ss -Htanp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\2, \1/p' | head -n 1)
    [[ -n $line ]] && printf ' (pid %s)' "$line"
    return 0
}

# Stop unless port $2 is free; $1 is the variable that picks another, $3 what the port is for.
require_free_port() {
    local variable=$1 port=$2 what=${3:-}
    [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "$variable=$port is not a port number"
    if port_taken "$port"; then
        die "port $port${what:+ ($what)} is already in use by another process$(port_holder "$port"); stop it, or set $variable to a free port"
    fi
    return 0
}

# True while process $1 exists and is not a zombie.
pid_alive() {
    local pid=$1 state
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo "?")
    [[ $state != Z ]]
}

# Wait up to $2 seconds for process $1 to exit; false if it is still there.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while pid_alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

show_log_tail() {
    local file=$1
    [[ -f $file ]] || return 0
    printf 'services: last lines of %s:\n' "$file" >&2
    tail -n 40 "$file" | sed 's/^/    /' >&2
}

# One mutating command at a time per checkout (e.g. parallel `make services-up`).
take_lock() {
    mkdir -p "$STATE_DIR"
    exec 8>"$STATE_DIR/.lock"
    flock -w 600 8 || die "another services.sh command holds $STATE_DIR/.lock"
}

# ----------------------------------------------------------------------------------------------
# Kafka

kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_SRC/pom.xml" | head -n 1
}

kafka_libs() { printf '%s/kafka-%s/libs' "$CACHE_ROOT" "$(kafka_version)"; }

java_bin() {
    if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        printf '%s' "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        command -v java
    else
        return 1
    fi
}

check_java() {
    local java spec major
    java=$(java_bin) || die "Java 17 or newer is needed for Kafka and none was found (install openjdk-17-jre-headless, or set JAVA_HOME)"
    spec=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -n 1)
    major=${spec#1.}
    major=${major%%.*}
    [[ $major =~ ^[0-9]+$ ]] || die "could not tell the version of $java"
    ((major >= 17)) || die "Kafka $(kafka_version) needs Java 17 or newer; $java is Java $spec (install openjdk-17-jre-headless, or set JAVA_HOME)"
}

# Resolve the broker and tool jars into the cache, once. The marker holds a checksum of the pom,
# so an interrupted copy or a changed pom is resolved again.
ensure_kafka_jars() {
    local libs dir marker want
    libs=$(kafka_libs)
    dir=$(dirname "$libs")
    marker="$dir/libs.complete"
    want=$(sha256sum "$KAFKA_SRC/pom.xml" | cut -d' ' -f1)
    if [[ -f $marker && $(<"$marker") == "$want" && -d $libs ]]; then
        return 0
    fi
    mkdir -p "$dir"
    (
        flock -w 900 9 || die "timed out waiting for $dir/.lock"
        if [[ -f $marker && $(<"$marker") == "$want" && -d $libs ]]; then
            exit 0
        fi
        command -v mvn >/dev/null 2>&1 ||
            die "Maven is needed once to fetch the Kafka jars into $libs (install maven)"
        say "resolving Kafka $(kafka_version) jars with Maven into $libs (first run only)"
        rm -rf "$libs" "$libs.partial" "$marker"
        if ! mvn -B -Dstyle.color=never -f "$KAFKA_SRC/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$libs.partial" >"$dir/maven.log" 2>&1; then
            show_log_tail "$dir/maven.log"
            die "Maven could not resolve the Kafka jars (log: $dir/maven.log)"
        fi
        compgen -G "$libs.partial/kafka_2.13-*.jar" >/dev/null ||
            die "Maven finished but no kafka_2.13 jar is in $libs.partial"
        mv "$libs.partial" "$libs"
        printf '%s\n' "$want" >"$marker"
    ) 9>"$dir/.lock"
}

# java with the cached jars on the class path and our log4j2 configuration.
kafka_java() {
    "$(java_bin)" -cp "$(kafka_libs)/*" -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" "$@"
}

# Run a tool class quietly: its own output on stdout, log lines (WARN and up) on stderr.
kafka_tool_java() {
    kafka_java -Xmx256m -Dnyc311.log.level=WARN -Dnyc311.log.target=SYSTEM_ERR "$@"
}

kafka_pid() {
    local pid cmdline
    [[ -f $KAFKA_PIDFILE ]] || return 1
    pid=$(<"$KAFKA_PIDFILE")
    pid_alive "$pid" || return 1
    # Guard against a recycled pid: the process must be our broker.
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$KAFKA_CONFIG"* ]] || return 1
    printf '%s' "$pid"
}

# The broker port of the running broker (from its rendered config), else the configured one.
kafka_running_port() {
    local port=""
    [[ -f $KAFKA_CONFIG ]] &&
        port=$(sed -n 's#^advertised.listeners=PLAINTEXT://127.0.0.1:\([0-9]*\).*#\1#p' "$KAFKA_CONFIG")
    printf '%s' "${port:-$KAFKA_PORT}"
}

render_kafka_config() {
    local line
    mkdir -p "$KAFKA_DATA" "$(dirname "$KAFKA_LOG")"
    : >"$KAFKA_CONFIG.tmp"
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line//@KAFKA_PORT@/"$KAFKA_PORT"}
        line=${line//@CONTROLLER_PORT@/"$KAFKA_CONTROLLER_PORT"}
        line=${line//@DATA_DIR@/"$KAFKA_DATA"}
        printf '%s\n' "$line" >>"$KAFKA_CONFIG.tmp"
    done <"$KAFKA_SRC/server.properties.in"
    mv "$KAFKA_CONFIG.tmp" "$KAFKA_CONFIG"
}

# Python with confluent_kafka (the project's venv), used for the readiness probe if present.
probe_python() {
    local py
    for py in "$REPO_ROOT/.venv/bin/python" python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import confluent_kafka' 2>/dev/null; then
            printf '%s' "$py"
            return 0
        fi
    done
    return 1
}

# True when the broker on port $1 answers a metadata request and lists itself (it is unfenced).
kafka_answers() {
    local port=$1 py
    if py=$(probe_python); then
        "$py" - "127.0.0.1:$port" 2>/dev/null <<'PY'
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
sys.exit(0 if admin.list_topics(timeout=5).brokers else 1)
PY
    else
        timeout 30 "$(java_bin)" -cp "$(kafka_libs)/*" \
            -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" -Dnyc311.log.level=OFF \
            org.apache.kafka.tools.BrokerApiVersionsCommand \
            --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1
    fi
}

wait_kafka_ready() {
    local port pid deadline=$((SECONDS + START_TIMEOUT))
    port=$(kafka_running_port)
    while :; do
        if ! pid=$(kafka_pid); then
            show_log_tail "$KAFKA_LOG"
            die "Kafka exited during startup (log: $KAFKA_LOG)"
        fi
        if port_open "$port" && kafka_answers "$port"; then
            say "Kafka ready on 127.0.0.1:$port (pid $pid)"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$KAFKA_LOG"
            die "Kafka did not answer on 127.0.0.1:$port within ${START_TIMEOUT}s (log: $KAFKA_LOG)"
        fi
        sleep 0.5
    done
}

# Start the broker process unless it runs; does not wait for it (see wait_kafka_ready).
launch_kafka() {
    local pid cluster_id p
    if pid=$(kafka_pid); then
        say "Kafka already running (pid $pid, port $(kafka_running_port))"
        return 0
    fi
    check_java
    ensure_kafka_jars
    require_free_port NYC311_KAFKA_PORT "$KAFKA_PORT" "Kafka broker"
    require_free_port NYC311_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT" "Kafka controller"
    render_kafka_config
    if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
        say "formatting Kafka storage in $KAFKA_DATA"
        cluster_id=$(kafka_tool_java kafka.tools.StorageTool random-uuid)
        printf '%s\n' "$cluster_id" >"$KAFKA_STATE/cluster.id"
        kafka_tool_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONFIG" \
            >>"$KAFKA_LOG" 2>&1 || {
            show_log_tail "$KAFKA_LOG"
            die "formatting Kafka storage failed"
        }
    fi
    # Keep one previous log around instead of growing a single file forever.
    if [[ -f $KAFKA_LOG ]] && (($(stat -c %s "$KAFKA_LOG") > 50 * 1024 * 1024)); then
        mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
    fi
    say "starting Kafka on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
    printf '\n===== %s: starting broker =====\n' "$(date '+%F %T')" >>"$KAFKA_LOG"
    rm -f "$KAFKA_PIDFILE"
    # A session of its own, so the broker outlives this shell and its process group.
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS holds several options
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PIDFILE" \
        "$(java_bin)" $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dkafka.logs.dir="$(dirname "$KAFKA_LOG")" \
        -Dlog4j2.configurationFile="$KAFKA_SRC/log4j2.properties" \
        -cp "$(kafka_libs)/*" kafka.Kafka "$KAFKA_CONFIG" \
        </dev/null >>"$KAFKA_LOG" 2>&1 8>&- 9>&- &
    local i
    for i in $(seq 50); do # the pid file appears as soon as the child runs
        [[ -s $KAFKA_PIDFILE ]] && break
        sleep 0.1
    done
}

start_kafka() {
    launch_kafka
    wait_kafka_ready
}

stop_kafka() {
    local pid
    if ! pid=$(kafka_pid); then
        rm -f "$KAFKA_PIDFILE"
        say "Kafka is not running"
        return 0
    fi
    say "stopping Kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$STOP_TIMEOUT"; then
        say "Kafka did not stop within ${STOP_TIMEOUT}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || die "could not kill Kafka (pid $pid)"
    fi
    rm -f "$KAFKA_PIDFILE"
    say "Kafka stopped"
}

kafka_status() {
    local pid port
    if pid=$(kafka_pid); then
        port=$(kafka_running_port)
        if kafka_answers "$port"; then
            say "Kafka: running on 127.0.0.1:$port (pid $pid), answering"
        else
            say "Kafka: running on 127.0.0.1:$port (pid $pid), NOT answering yet"
            return 1
        fi
    else
        say "Kafka: stopped"
        return 1
    fi
}

# Short names for the tools used most; anything else is taken as a class name.
kafka_tool_class() {
    case $1 in
    topics) echo org.apache.kafka.tools.TopicCommand ;;
    consumer-groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
    get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
    transactions) echo org.apache.kafka.tools.TransactionsCommand ;;
    broker-api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    metadata-quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    storage) echo kafka.tools.StorageTool ;;
    dump-log) echo kafka.tools.DumpLogSegments ;;
    *) echo "$1" ;;
    esac
}

kafka_tool() {
    (($# >= 1)) || die "usage: services.sh kafka-tool CLASS|NAME [ARGS...]  (e.g. consumer-groups --bootstrap-server 127.0.0.1:$KAFKA_PORT --describe --all-groups)"
    local class
    class=$(kafka_tool_class "$1")
    shift
    check_java
    ensure_kafka_jars
    kafka_tool_java "$class" "$@"
}

# ----------------------------------------------------------------------------------------------
# PostgreSQL

# initdb refuses to run as root, so as root the server runs as the `postgres` system user and
# its files live where that user can reach them whatever the checkout path is.
PG_OS_USER=$(if is_root; then echo postgres; else id -un; fi)
# The default instance keeps the name it always had (a hash of the checkout path); another state
# directory gets a cluster of its own.
if [[ $STATE_DIR == "$REPO_ROOT/.services" ]]; then HASHED=$REPO_ROOT; else HASHED=$STATE_DIR; fi
REPO_HASH=$(printf '%s' "$HASHED" | sha256sum | cut -c1-12)

pg_root() {
    local local_root="$STATE_DIR/postgres"
    if ! is_root && [[ ! -L $local_root ]] && ((${#local_root} < 80)); then
        printf '%s' "$local_root"
    elif is_root; then
        printf '/tmp/nyc311-pg-%s' "$REPO_HASH"
    else # long checkout path: the socket path must stay under ~100 characters
        printf '/tmp/nyc311-pg-%s-%s' "$REPO_HASH" "$(id -u)"
    fi
}

PG_ROOT=$(pg_root)
PGDATA_DIR="$PG_ROOT/data"
PG_LOG="$PG_ROOT/postgres.log"

find_pg_bindir() {
    local dir
    if [[ -n ${NYC311_PG_BINDIR:-} ]]; then
        [[ -x $NYC311_PG_BINDIR/initdb ]] || die "NYC311_PG_BINDIR=$NYC311_PG_BINDIR has no initdb"
        printf '%s' "$NYC311_PG_BINDIR"
        return 0
    fi
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | while read -r d; do
        [[ -x $d/initdb ]] && echo "$d"
    done | tail -n 1)
    if [[ -z $dir ]] && command -v initdb >/dev/null 2>&1; then
        dir=$(dirname "$(command -v initdb)")
    fi
    [[ -n $dir ]] || return 1
    printf '%s' "$dir"
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL is not installed and there is no apt-get; install PostgreSQL 14+ and set NYC311_PG_BINDIR"
    local sudo=()
    if ! is_root; then
        command -v sudo >/dev/null 2>&1 || die "PostgreSQL is not installed; run as root or install the postgresql package"
        sudo=(sudo)
    fi
    say "PostgreSQL not found; installing Debian's postgresql package"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
}

PG_BIN=""
ensure_pg_bins() {
    [[ -n $PG_BIN ]] && return 0
    if ! PG_BIN=$(find_pg_bindir); then
        install_postgres
        PG_BIN=$(find_pg_bindir) || die "postgresql was installed but no initdb was found"
    fi
    if is_root && ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        say "creating system user $PG_OS_USER to run PostgreSQL"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
    fi
}

# Run a PostgreSQL binary as the user that owns the cluster.
pg() {
    local tool=$1
    shift
    if is_root; then
        (cd / && runuser -u "$PG_OS_USER" -- "$PG_BIN/$tool" "$@")
    else
        "$PG_BIN/$tool" "$@"
    fi
}

# The postmaster's pid while it runs. (Not `pg_ctl status`: it counts an exited but not yet
# reaped postmaster as running.)
pg_postmaster_pid() {
    local pid cmdline
    [[ -f $PGDATA_DIR/postmaster.pid ]] || return 1
    pid=$(head -n 1 "$PGDATA_DIR/postmaster.pid")
    pid_alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *postgres* ]] || return 1
    printf '%s' "$pid"
}

pg_running() { pg_postmaster_pid >/dev/null; }

pg_running_port() {
    local port=""
    [[ -f $PGDATA_DIR/postmaster.pid ]] && port=$(sed -n 4p "$PGDATA_DIR/postmaster.pid" 2>/dev/null)
    printf '%s' "${port:-$PG_PORT}"
}

prepare_pg_root() {
    mkdir -p "$STATE_DIR"
    if [[ $PG_ROOT != "$STATE_DIR/postgres" ]]; then
        if [[ -e $PG_ROOT ]]; then
            [[ $(stat -c %U "$PG_ROOT") == "$PG_OS_USER" ]] ||
                die "$PG_ROOT exists but is not owned by $PG_OS_USER; remove it"
        else
            mkdir -m 700 "$PG_ROOT"
            is_root && chown "$PG_OS_USER:" "$PG_ROOT"
        fi
        # Point .services/postgres at the real location so it is easy to find.
        ln -sfn "$PG_ROOT" "$STATE_DIR/postgres"
    else
        mkdir -p -m 700 "$PG_ROOT"
    fi
}

init_postgres() {
    say "creating PostgreSQL cluster in $PGDATA_DIR"
    pg initdb -D "$PGDATA_DIR" -U "$PG_OS_USER" --encoding=UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_ROOT/initdb.log" 2>&1 || {
        show_log_tail "$PG_ROOT/initdb.log"
        die "initdb failed"
    }
    # Our settings live in nyc311.conf, rewritten on every start.
    if is_root; then
        printf "\ninclude_if_exists = 'nyc311.conf'\n" | runuser -u "$PG_OS_USER" -- tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
    else
        printf "\ninclude_if_exists = 'nyc311.conf'\n" >>"$PGDATA_DIR/postgresql.conf"
    fi
}

write_pg_conf() {
    local conf
    # The local socket lives in the data directory (mode 0700), so local trust means "the owner".
    conf=$(
        cat <<EOF
# Written by services/services.sh on every start.
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDATA_DIR'
max_connections = 200
fsync = on
password_encryption = 'scram-sha-256'
EOF
    )
    if is_root; then
        printf '%s\n' "$conf" | runuser -u "$PG_OS_USER" -- tee "$PGDATA_DIR/nyc311.conf" >/dev/null
    else
        printf '%s\n' "$conf" >"$PGDATA_DIR/nyc311.conf"
    fi
}

wait_pg_ready() {
    local port deadline=$((SECONDS + START_TIMEOUT))
    port=$(pg_running_port)
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -t 5; do
        if ((SECONDS >= deadline)); then
            show_log_tail "$PG_LOG"
            die "PostgreSQL did not answer on 127.0.0.1:$port within ${START_TIMEOUT}s (log: $PG_LOG)"
        fi
        sleep 0.3
    done
}

# Role and database for the application; safe to repeat.
provision_postgres() {
    pg psql -X -q -v ON_ERROR_STOP=1 -h "$PGDATA_DIR" -p "$(pg_running_port)" -U "$PG_OS_USER" -d postgres >/dev/null <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nyc311') THEN
    CREATE ROLE nyc311 LOGIN CREATEDB CREATEROLE PASSWORD 'nyc311';
  ELSE
    ALTER ROLE nyc311 LOGIN CREATEDB CREATEROLE PASSWORD 'nyc311';
  END IF;
END
$$;
SELECT 'CREATE DATABASE nyc311 OWNER nyc311'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'nyc311') \gexec
SQL
}

start_postgres() {
    ensure_pg_bins
    prepare_pg_root
    if pg_running; then
        say "PostgreSQL already running (port $(pg_running_port))"
    else
        require_free_port NYC311_PG_PORT "$PG_PORT" PostgreSQL
        [[ -f $PGDATA_DIR/PG_VERSION ]] || init_postgres
        write_pg_conf
        say "starting PostgreSQL on 127.0.0.1:$PG_PORT (data in $PGDATA_DIR)"
        # setsid: the server gets a session of its own and outlives this shell.
        if is_root; then
            (cd / && setsid -w runuser -u "$PG_OS_USER" -- "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" \
                -l "$PG_LOG" -w -t "$START_TIMEOUT" </dev/null >/dev/null 2>&1 8>&- 9>&-)
        else
            setsid -w "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$START_TIMEOUT" \
                </dev/null >/dev/null 2>&1 8>&- 9>&-
        fi || {
            show_log_tail "$PG_LOG"
            die "PostgreSQL did not start (log: $PG_LOG)"
        }
    fi
    wait_pg_ready
    provision_postgres
    say "PostgreSQL ready on 127.0.0.1:$(pg_running_port)"
}

stop_postgres() {
    local pid
    if ! pid=$(pg_postmaster_pid); then
        say "PostgreSQL is not running"
        return 0
    fi
    ensure_pg_bins
    say "stopping PostgreSQL (pid $pid)"
    # "fast" mode: roll back open transactions, close sessions, checkpoint, exit. ("smart", the
    # plain SIGTERM, would wait for every client to disconnect.)
    if ! pg pg_ctl stop -D "$PGDATA_DIR" -m fast -w -t "$STOP_TIMEOUT" >/dev/null 2>&1 &&
        ! wait_exit "$pid" 0; then
        say "PostgreSQL did not stop within ${STOP_TIMEOUT}s; killing it"
        # Immediate mode first (the postmaster takes its children down), SIGKILL as a last resort.
        pg pg_ctl stop -D "$PGDATA_DIR" -m immediate -w -t 10 >/dev/null 2>&1 || true
        if pid_alive "$pid"; then
            pkill -KILL -P "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait_exit "$pid" 10 || die "could not kill PostgreSQL (pid $pid)"
        # A killed postmaster leaves its lock file behind; the process is gone, so drop it.
        rm -f "$PGDATA_DIR/postmaster.pid"
    fi
    say "PostgreSQL stopped"
}

pg_status() {
    local port
    if pg_running; then
        ensure_pg_bins
        port=$(pg_running_port)
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 5; then
            say "PostgreSQL: running on 127.0.0.1:$port (data in $PGDATA_DIR), answering"
        else
            say "PostgreSQL: running on 127.0.0.1:$port, NOT answering"
            return 1
        fi
    else
        say "PostgreSQL: stopped"
        return 1
    fi
}

# ----------------------------------------------------------------------------------------------
# Commands

both_env_set() { [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} && -n ${DATABASE_URL:-} ]]; }

write_env_file() {
    mkdir -p "$(dirname "$ENV_FILE")"
    cat >"$ENV_FILE.tmp" <<EOF
# Written by services/services.sh up; removed by services/services.sh down.
# Variables set in the environment take precedence over this file.
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(kafka_running_port)
DATABASE_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$(pg_running_port)/$DB_NAME
EOF
    if [[ -f $ENV_FILE ]] && cmp -s "$ENV_FILE.tmp" "$ENV_FILE"; then
        rm -f "$ENV_FILE.tmp"
        say "$ENV_FILE is up to date"
    else
        mv "$ENV_FILE.tmp" "$ENV_FILE"
        say "wrote $ENV_FILE"
    fi
}

# After start-kafka / start-postgres: refresh .env.services once both are up.
maybe_write_env_file() {
    if ! both_env_set && kafka_pid >/dev/null && pg_running; then
        write_env_file
    fi
}

# Fail before starting anything when a port we need is taken by someone else: a port held while
# this checkout's own server runs is that server's, and `up` leaves it alone.
check_ports_free() {
    if ! kafka_pid >/dev/null; then
        require_free_port NYC311_KAFKA_PORT "$KAFKA_PORT" "Kafka broker"
        require_free_port NYC311_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT" "Kafka controller"
    fi
    if ! pg_running; then
        require_free_port NYC311_PG_PORT "$PG_PORT" PostgreSQL
    fi
    return 0
}

cmd_up() {
    if both_env_set; then
        say "KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL are set; using those servers, starting nothing"
        return 0
    fi
    take_lock
    check_ports_free
    launch_kafka # the broker boots while PostgreSQL starts
    start_postgres
    wait_kafka_ready
    write_env_file
}

cmd_down() {
    local purge=0
    case ${1:-} in
    "") ;;
    --purge) purge=1 ;;
    *) die "usage: services.sh down [--purge]" ;;
    esac
    take_lock
    stop_kafka
    stop_postgres
    rm -f "$ENV_FILE"
    if ((purge)); then
        say "deleting Kafka and PostgreSQL data"
        rm -rf "$KAFKA_STATE"
        [[ $PG_ROOT != "$STATE_DIR/postgres" ]] && rm -rf "$PG_ROOT"
        rm -rf "$STATE_DIR/postgres"
        say "kept the jar cache in $(dirname "$(kafka_libs)")"
    fi
}

cmd_status() {
    local rc=0
    kafka_status || rc=1
    pg_status || rc=1
    if [[ -f $ENV_FILE ]]; then
        say "$ENV_FILE:"
        grep -v '^#' "$ENV_FILE" | sed 's/^/    /' >&2
    else
        say "no $ENV_FILE"
    fi
    return "$rc"
}

usage() {
    sed -n '2,/^# Kafka (KRaft/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

main() {
    local cmd=${1:-}
    (($#)) && shift
    case $cmd in
    up) cmd_up ;;
    down) cmd_down "$@" ;;
    status) cmd_status ;;
    start-kafka)
        take_lock
        start_kafka
        maybe_write_env_file
        ;;
    stop-kafka)
        take_lock
        stop_kafka
        ;;
    restart-kafka)
        take_lock
        stop_kafka
        start_kafka
        ;;
    start-postgres)
        take_lock
        start_postgres
        maybe_write_env_file
        ;;
    stop-postgres)
        take_lock
        stop_postgres
        ;;
    restart-postgres)
        take_lock
        stop_postgres
        start_postgres
        ;;
    check-port)
        (($# >= 2)) || die "usage: services.sh check-port VARIABLE PORT [WHAT]"
        require_free_port "$1" "$2" "${*:3}"
        ;;
    kafka-tool) kafka_tool "$@" ;;
    -h | --help | help)
        usage
        ;;
    *)
        usage
        exit 2
        ;;
    esac
}

main "$@"
