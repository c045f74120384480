# nyc311-prometheus:local, a stand-in for prom/prometheus built with no registry (deploy/docker.sh
# prometheus-image): Debian's Prometheus (2.42 in bookworm; compose's default is v3.5.0) on the
# local base image, under the official image's contract: the configuration at
# /etc/prometheus/prometheus.yml (compose mounts deploy/prometheus/prometheus.yml there), the
# TSDB in the /prometheus volume, the server on :9090, the official ENTRYPOINT and CMD, and the
# user nobody. wget is there for compose's healthcheck (`wget -q -O /dev/null .../-/ready`) and
# promtool for checking a configuration. Run the stack on it with
# PROMETHEUS_IMAGE=nyc311-prometheus:local.
FROM local/debian:bookworm

# No service started by the package's scripts (there is no init in a build).
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
    && chmod 0755 /usr/sbin/policy-rc.d \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       prometheus wget \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d

# As the official image: nobody owns /prometheus, so a fresh named volume mounted there starts
# out writable by the server.
RUN mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus

USER nobody
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
