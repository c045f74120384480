# nyc311-s3:local, a stand-in for MinIO's images built with no registry (deploy/docker.sh
# s3-image): moto's S3 server (moto[server], the version the project's tests use) from wheels
# built on the host (build/s3-wheels) on Debian's Python, and an `mc` with the few commands
# docker-compose.yml runs (deploy/images/mc.py). The one image takes both places:
#
#   MINIO_IMAGE=nyc311-s3:local      the minio service: `server /data --console-address :9001`
#                                    starts the S3 API on :9000 (deploy/images/s3-entrypoint.sh);
#                                    the healthcheck `mc ready local` answers once it listens
#   MINIO_MC_IMAGE=nyc311-s3:local   minio-setup: `mc alias set`, `mb --ignore-existing` and
#                                    `anonymous set download` (a bucket policy moto enforces
#                                    for unsigned GETs)
#
# What differs from MinIO: moto keeps objects in memory (the /data volume stays empty and a
# restart starts with no bucket: minio-setup makes it again), it accepts any credentials on a
# signed request (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD are used by `mc` only), and there is no
# console on :9001.
FROM local/debian:bookworm

RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

COPY build/s3-wheels /wheels
RUN python3 -m venv /opt/moto \
    && /opt/moto/bin/pip install -q --no-index --find-links /wheels "moto[server]" \
    && rm -rf /wheels \
    && useradd --create-home --uid 1000 s3 \
    && mkdir /data \
    && chown s3: /data

COPY deploy/images/s3-entrypoint.sh /usr/local/bin/s3-entrypoint.sh
COPY deploy/images/mc.py /usr/local/bin/mc
RUN chmod 0755 /usr/local/bin/s3-entrypoint.sh /usr/local/bin/mc

# Path-style buckets only (http://minio:9000/BUCKET/KEY), as MinIO without MINIO_DOMAIN.
ENV PATH=/opt/moto/bin:$PATH \
    S3_IGNORE_SUBDOMAIN_BUCKETNAME=true \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER s3
WORKDIR /home/s3
VOLUME ["/data"]
EXPOSE 9000
ENTRYPOINT ["s3-entrypoint.sh"]
CMD ["server", "/data"]
