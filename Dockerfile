# The nyc311 command in a container; docker-compose.yml runs each pipeline service from this
# image with a different command (`nyc311 db upgrade`, `nyc311 run projector`, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in a layer of their own, so code changes do not reinstall them.
# (confluent-kafka and psycopg[binary] ship wheels with their C libraries: no compiler needed.)
COPY pyproject.toml README.md ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', *deps])"

# The packages listed in pyproject.toml [tool.setuptools] packages.
COPY nyc311/ nyc311/
COPY schemas/ schemas/
COPY survey/ survey/
COPY storage/ storage/
COPY producers/ producers/
COPY consumers/ consumers/
COPY reports/ reports/
COPY operations/ operations/
COPY cli/ cli/
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 nyc311

USER nyc311
WORKDIR /home/nyc311
CMD ["nyc311", "--help"]
