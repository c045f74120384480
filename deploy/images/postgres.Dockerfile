# A stand-in for the official postgres image, built with no registry (deploy/docker.sh
# postgres-image): Debian's PostgreSQL on the local base image, started by
# deploy/images/postgres-entrypoint.sh under the official image's contract for what
# docker-compose.yml uses (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA at
# /var/lib/postgresql/data, pg_isready on PATH). Run the stack on it with
# POSTGRES_IMAGE=nyc311-postgres:local.
#
# Compose's default is postgres:16; bookworm ships PostgreSQL 15 (16 is only on
# apt.postgresql.org, out of reach here). 15 is enough for this check: the migrations use
# nothing newer than 14 (services/services.sh asks for 14+), and the local services and the
# benchmarks already run on this same Debian 15. A data directory is tied to its major version,
# so a volume initialised by this image will not start under postgres:16 (or back): use a fresh
# volume when switching.
FROM local/debian:bookworm

# No cluster from the package (postgresql-common would make one in /var/lib/postgresql/15/main):
# the entrypoint makes the only cluster, in PGDATA, on first start.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main.conf \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/run/postgresql \
    && chown postgres:postgres /var/run/postgresql \
    && chmod 3777 /var/run/postgresql

# PGDATA stays root-owned in the image, as a fresh named volume or bind mount is: the
# entrypoint gives it to postgres before dropping privileges.
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
VOLUME /var/lib/postgresql/data

COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
RUN chmod 755 /usr/local/bin/postgres-entrypoint.sh
ENTRYPOINT ["postgres-entrypoint.sh"]

# As the official image: `docker stop` sends SIGINT, PostgreSQL's fast shutdown (clients are
# disconnected, the checkpoint is written). SIGTERM, a smart shutdown, would wait for every
# client to leave and be killed at docker's timeout while a service stays connected.
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
