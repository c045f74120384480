# The nyc311 image built with no registry and no HTTPS from inside the build (deploy/docker.sh
# app-image): Debian's Python on the local base image, the project and its dependencies from
# wheels built on the host (build/wheels). The repository's Dockerfile is the same image for
# machines that reach PyPI and Docker Hub.
FROM local/debian:bookworm

RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

COPY build/wheels /wheels
RUN python3 -m venv /opt/nyc311 \
    && /opt/nyc311/bin/pip install -q --no-index --find-links /wheels nyc311-pipeline \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 nyc311

ENV PATH=/opt/nyc311/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER nyc311
WORKDIR /home/nyc311
CMD ["nyc311", "--help"]
