# syntax=docker/dockerfile:1
# DATS Orchestration Service image.
#
#   docker build -t dats-orchestration-service:0.1.0 .
#   docker run --rm -p 127.0.0.1:8000:8000 dats-orchestration-service:0.1.0
#
# Two stages: "build" turns the project and every pinned requirement into wheels; the final
# stage installs only those wheels (no index, no compiler) into a virtual environment and runs
# as an unprivileged user. Checked by tests/contract/test_deploy_files.py (hadolint and the
# invariants below); docs/operating/compose.md describes the compose stack built on it.

# Both stages use the Python the project is developed and tested on (3.11), pinned to an exact
# release; keep the two FROM lines equal (the test checks it), since wheels built by one
# interpreter are installed by the other.

# ---------------------------------------------------------------------------------------------
FROM python:3.11.7-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Requirements first, so the (slow) dependency wheels stay cached while only the code changes.
COPY requirements.txt ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
FROM python:3.11.7-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="DATS Orchestration Service" \
      org.opencontainers.image.description="Task lifecycle, routing, event bus and provenance store" \
      org.opencontainers.image.version="0.1.0"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Only the wheels from the build stage: --no-index means nothing is fetched here, and the
# bind mount keeps the wheel files themselves out of the image's layers.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    python -m venv /opt/venv \
    && pip install --no-cache-dir --no-index --find-links=/wheels \
        -r /tmp/requirements.txt /wheels/orchestration_service-*.whl

# An unprivileged user with fixed ids (10001), so volume ownership is predictable.
RUN groupadd --system --gid 10001 orchestration \
    && useradd --system --no-log-init --uid 10001 --gid orchestration \
        --home-dir /app --shell /usr/sbin/nologin orchestration

# The service reads config/orchestration-service.yaml (and config/routing-rules.yaml) relative
# to its working directory, and the SQLite default lives in var/ there: /app holds both.
# config/ stays root-owned (read-only for the service); var/ is the one writable directory.
WORKDIR /app
COPY config ./config
RUN mkdir -p /app/var && chown orchestration:orchestration /app/var

USER 10001:10001

# Inside a container the service must listen on every interface, or nothing outside the
# container (published ports, other compose services) can reach it. The service's own default
# is 127.0.0.1, which is right everywhere else. Beyond loopback, API keys are on (serve refuses
# to listen there with auth off): give the first key with ORCH_AUTH__BOOTSTRAP_ADMIN_KEY.
ENV ORCH_HOST=0.0.0.0 \
    ORCH_PORT=8000 \
    ORCH_AUTH_ENABLED=true \
    ORCH_LOG_FORMAT=json

EXPOSE 8000

# Liveness: the process answers GET /api/v1/health/live. Python's standard library, because a
# slim image has no curl or wget. A non-2xx answer or no answer raises, so the exit code is 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ORCH_PORT', '8000') + '/api/v1/health/live', timeout=4)"]

# serve applies pending migrations first (under a PostgreSQL advisory lock, so replicas may
# start together) and then serves; SIGTERM shuts it down gracefully (ORCH_SHUTDOWN_GRACE_SECONDS).
ENTRYPOINT ["orchestration-service"]
CMD ["serve"]
