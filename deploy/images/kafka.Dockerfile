# nyc311-kafka:local, a stand-in for the official apache/kafka:4.1.1 image built with no registry
# (deploy/docker.sh kafka-image): Debian's headless Java 17 on the local base image and the jars
# services/services.sh resolves with Maven, staged by deploy/docker.sh in build/kafka/libs. The
# entrypoint (deploy/images/kafka-entrypoint.sh) takes the official image's KAFKA_* environment
# and CLUSTER_ID, and /opt/kafka/bin has the official tools' names, so docker-compose.yml's kafka
# service and its healthcheck run unchanged with KAFKA_IMAGE=nyc311-kafka:local. The official
# start script's path, /etc/kafka/docker/run, links to the entrypoint too, so the tests' Kafka
# container (tests/backends.py: a command that waits for its advertised address, then execs that
# script) runs on either image.
FROM local/debian:bookworm

RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

# The official image's user (appuser, uid 1000) owns the configuration and the data directory, so
# a named volume mounted at /var/lib/kafka/data starts out writable by the broker.
RUN useradd --no-create-home --home-dir /opt/kafka --uid 1000 appuser \
    && mkdir -p /opt/kafka/bin /opt/kafka/config /opt/kafka/logs /var/lib/kafka/data \
    && chown appuser: /opt/kafka/config /opt/kafka/logs /var/lib/kafka/data

COPY build/kafka/libs /opt/kafka/libs
COPY services/kafka/log4j2.properties /opt/kafka/config/log4j2.properties
COPY deploy/images/kafka-entrypoint.sh /opt/kafka/bin/kafka-entrypoint.sh
COPY deploy/images/kafka-tool.sh /opt/kafka/bin/kafka-run-class.sh
RUN chmod 0755 /opt/kafka/bin/kafka-entrypoint.sh /opt/kafka/bin/kafka-run-class.sh \
    && for tool in topics consumer-groups broker-api-versions console-consumer console-producer \
       get-offsets metadata-quorum storage; do \
         ln -s kafka-run-class.sh "/opt/kafka/bin/kafka-$tool.sh"; \
       done \
    && mkdir -p /etc/kafka/docker \
    && ln -s /opt/kafka/bin/kafka-entrypoint.sh /etc/kafka/docker/run

ENV PATH=/opt/kafka/bin:$PATH
USER appuser
WORKDIR /opt/kafka
VOLUME ["/var/lib/kafka/data"]
EXPOSE 9092
ENTRYPOINT ["/opt/kafka/bin/kafka-entrypoint.sh"]
