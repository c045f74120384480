#!/usr/bin/env bash
# Entrypoint of nyc311-kafka:local (deploy/images/kafka.Dockerfile), a stand-in for the official
# apache/kafka image that honours the same environment contract:
#
#   KAFKA_<NAME>=value   becomes the server property <name>=value: the KAFKA_ prefix dropped,
#                        lower-cased, `_` -> `.`, `__` -> `_`, `___` -> `-`
#                        (KAFKA_LOG_DIRS -> log.dirs, KAFKA_LISTENER_NAME_X__Y -> listener.name.x_y)
#   CLUSTER_ID           formats the storage in log.dirs once (a formatted directory is kept)
#
# As in the official image: the JVM variables (KAFKA_HEAP_OPTS, KAFKA_OPTS,
# KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_GC_LOG_OPTS, KAFKA_JMX_OPTS, KAFKA_LOG4J_OPTS, ...) are not
# properties, and every variable of the official image's single-node defaults that is left
# unset gets its default value (so set the listeners, quorum and log.dirs together).
# Arguments NAME=value are exported before anything else. The broker then replaces this script
# (exec): it is PID 1 and `docker stop`'s SIGTERM shuts it down cleanly.
#
# The official image's layout: /etc/kafka/docker/run (the image's start script, which
# testcontainers and other tools exec) is a link to this script, and a command given instead of
# NAME=value arguments (`docker run IMAGE sh -c '…'`) runs as it is, as the official entrypoint
# runs its CMD.
set -euo pipefail

KAFKA_HOME=/opt/kafka
CONFIG=$KAFKA_HOME/config/server.properties

say() { printf '===> %s\n' "$*"; }

if (($#)) && [[ $1 != *=* ]]; then
    exec "$@"
fi
for arg in "$@"; do
    [[ $arg == *=* ]] || { say "error: argument '$arg' is not NAME=value"; exit 2; }
    export "${arg?}"
done

# The official image's defaults (docker/resources/common-scripts/configureDefaults), applied to
# each variable left unset.
if [[ -z ${KAFKA_ZOOKEEPER_CONNECT:-} ]]; then
    protocol_map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT
    listeners=PLAINTEXT://localhost:29092,CONTROLLER://localhost:29093,PLAINTEXT_HOST://0.0.0.0:9092
    declare -A defaults=(
        [CLUSTER_ID]=5L6g3nShT-eMCtK--X86sw
        [KAFKA_NODE_ID]=1
        [KAFKA_LISTENER_SECURITY_PROTOCOL_MAP]=$protocol_map
        [KAFKA_LISTENERS]=$listeners
        [KAFKA_ADVERTISED_LISTENERS]=PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092
        [KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR]=1
        [KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS]=0
        [KAFKA_TRANSACTION_STATE_LOG_MIN_ISR]=1
        [KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR]=1
        [KAFKA_PROCESS_ROLES]=broker,controller
        [KAFKA_CONTROLLER_QUORUM_VOTERS]=1@localhost:29093
        [KAFKA_INTER_BROKER_LISTENER_NAME]=PLAINTEXT
        [KAFKA_CONTROLLER_LISTENER_NAMES]=CONTROLLER
        [KAFKA_LOG_DIRS]=/tmp/kraft-combined-logs
    )
    for name in "${!defaults[@]}"; do
        if [[ -z ${!name:-} ]]; then
            say "$name not set; using the default ${defaults[$name]}"
            export "$name=${defaults[$name]}"
        fi
    done
fi

if [[ -n ${KAFKA_PROCESS_ROLES:-} ]]; then
    [[ -n ${CLUSTER_ID:-} ]] || { say "error: CLUSTER_ID is needed in KRaft mode"; exit 1; }
    if [[ $KAFKA_PROCESS_ROLES == controller ]]; then
        if [[ -n ${KAFKA_ADVERTISED_LISTENERS:-} ]]; then
            say "error: KAFKA_ADVERTISED_LISTENERS is not supported on a KRaft controller"
            exit 1
        fi
        unset KAFKA_ADVERTISED_LISTENERS
    fi
fi
if [[ -z ${KAFKA_LISTENERS:-} && ${KAFKA_PROCESS_ROLES:-} != controller &&
    -n ${KAFKA_ADVERTISED_LISTENERS:-} ]]; then
    export KAFKA_LISTENERS
    KAFKA_LISTENERS=$(sed -e 's|://[^:]*:|://0.0.0.0:|g' <<<"$KAFKA_ADVERTISED_LISTENERS")
fi

# KAFKA_<NAME> -> <name>: `___` -> `-`, `__` -> `_`, `_` -> `.`, lower case.
property_name() {
    local key=${1#KAFKA_}
    key=${key//___/-}
    key=${key//__/$'\x01'}
    key=${key//_/.}
    key=${key//$'\x01'/_}
    printf '%s' "${key,,}"
}

not_properties=" KAFKA_VERSION KAFKA_HEAP_OPTS KAFKA_HEAP_OPT KAFKA_LOG4J_OPTS KAFKA_OPTS \
KAFKA_JMX_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_GC_LOG_OPTS KAFKA_LOG4J_ROOT_LOGLEVEL \
KAFKA_LOG4J_LOGGERS KAFKA_TOOLS_LOG4J_LOGLEVEL KAFKA_HOME "

render_properties() {
    local name
    printf '# Written by the entrypoint from the KAFKA_* environment on every start.\n'
    while IFS= read -r name; do
        [[ $not_properties == *" $name "* ]] && continue
        printf '%s=%s\n' "$(property_name "$name")" "${!name}"
    done < <(compgen -e | grep '^KAFKA_' | sort)
}

render_properties >"$CONFIG.tmp"
mv "$CONFIG.tmp" "$CONFIG"
say "server properties ($CONFIG):"
grep -v '^#' "$CONFIG" | sed 's/^/    /'

# Format the storage once: every directory of log.dirs (or log.dir) without meta.properties.
log_dirs=$(sed -n 's/^log\.dirs=//p' "$CONFIG")
[[ -n $log_dirs ]] || log_dirs=$(sed -n 's/^log\.dir=//p' "$CONFIG")
if [[ -n ${KAFKA_PROCESS_ROLES:-} ]]; then
    unformatted=0
    IFS=, read -r -a dirs <<<"${log_dirs:-/tmp/kraft-combined-logs}"
    for dir in "${dirs[@]}"; do [[ -f $dir/meta.properties ]] || unformatted=1; done
    if ((unformatted)); then
        say "formatting the storage in ${log_dirs} (cluster $CLUSTER_ID)"
        "$KAFKA_HOME/bin/kafka-storage.sh" format --ignore-formatted \
            --cluster-id "$CLUSTER_ID" --config "$CONFIG"
    else
        say "storage in ${log_dirs} is formatted already"
    fi
fi

# The official kafka-run-class.sh's defaults.
performance_opts="-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"

say "launching the broker"
# shellcheck disable=SC2086 # each of these holds several options
exec java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} \
    ${KAFKA_JVM_PERFORMANCE_OPTS:-$performance_opts} \
    ${KAFKA_GC_LOG_OPTS:-} ${KAFKA_JMX_OPTS:-} \
    ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$KAFKA_HOME/config/log4j2.properties} \
    ${KAFKA_OPTS:-} \
    -Dkafka.logs.dir="$KAFKA_HOME/logs" -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$CONFIG"
