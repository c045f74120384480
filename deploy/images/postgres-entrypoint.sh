#!/usr/bin/env bash
# The entrypoint of nyc311-postgres:local (deploy/images/postgres.Dockerfile): the official
# postgres image's contract, for what docker-compose.yml uses.
#
#   - As root: PGDATA (a volume, root-owned when fresh) and the socket directory are given to the
#     postgres OS user, and the script runs again as that user (setpriv, from util-linux).
#   - On first start, with no PG_VERSION in PGDATA: initdb with the superuser POSTGRES_USER
#     (default postgres) and the password POSTGRES_PASSWORD (required; stored as SCRAM-SHA-256),
#     the database POSTGRES_DB (default POSTGRES_USER) created on a server that listens on its
#     unix socket only (so a TCP healthcheck fails until the initialisation is over),
#     listen_addresses '*', and pg_hba.conf: trust on the socket inside the container,
#     scram-sha-256 for every host connection.
#   - Then postgres is exec'd in the foreground as PID 1: docker stop's signal (SIGINT, the
#     image's STOPSIGNAL: a fast shutdown) reaches it directly.
#
# Arguments: `postgres [option ...]` (the default), or options alone (`-c name=value ...`),
# passed on to postgres; any other command runs as it is (e.g. `bash`, `psql ...`), as does
# `postgres --version` or `--help`.
# Not implemented from the official image: /docker-entrypoint-initdb.d, POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD, *_FILE secrets.
set -euo pipefail

say() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi
[[ ${1:-} == postgres ]] || exec "$@"
# `postgres --version` and the like print and exit: no data directory needed.
for arg; do
    case $arg in -'?'|--help|--describe-config|-V|--version) exec "$@" ;; esac
done

if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    # chown only what is not postgres's already: a large data directory is not walked each start.
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    export HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    POSTGRES_USER=${POSTGRES_USER:-postgres}
    POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
    [[ -n ${POSTGRES_PASSWORD:-} ]] || die "PGDATA ($PGDATA) is empty and POSTGRES_PASSWORD is not set: \
the superuser needs a password"
    say "initialising $PGDATA (superuser $POSTGRES_USER, database $POSTGRES_DB)"
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        -D "$PGDATA" >/dev/null
    printf '\n# postgres-entrypoint.sh\nlisten_addresses = '"'*'"'\n' >>"$PGDATA/postgresql.conf"
    printf '\n# postgres-entrypoint.sh: password auth for every host connection\n%s\n' \
        'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w -s start
    if [[ $POSTGRES_DB != postgres ]]; then
        psql -v ON_ERROR_STOP=1 -X -q --username="$POSTGRES_USER" --no-password --dbname=postgres \
            --set=db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    pg_ctl -D "$PGDATA" -m fast -w -s stop
    say "initialised; starting PostgreSQL"
fi

exec "$@"
