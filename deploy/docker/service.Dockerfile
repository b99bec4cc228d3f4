# syntax=docker/dockerfile:1.7
# One image recipe for every nameko service (build context = the repository root):
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=contacts -t crm-contacts .
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=loyalty  -t crm-loyalty .
# SERVICE is the service's name in the registry (libs/crm-common/crm_common/registry.toml),
# whose package is crm-<name> in services/<name>/ (tests/deploy/test_images.py holds every
# entry to that). The builder installs exactly the service's locked dependencies (no dev
# group, no other service, no gRPC) as wheels into /app/.venv; the runtime stage gets that
# virtualenv, nothing else: no uv, no sources, no tests, no config file (the registry is
# package data of crm-common, inside the virtualenv).
ARG PYTHON_IMAGE=python:3.11-slim-trixie
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE
COPY --from=uv /uv /bin/uv
# Compile .pyc now: the runtime root filesystem is read-only and must not need them later.
# The image's own python3.11 (same path in the runtime stage), never a downloaded one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON=python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first, from the lockfile alone: this layer survives code changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-workspace \
        --package "crm-${SERVICE:?build with --build-arg SERVICE=<a service of the registry>}"
# Then the workspace members this service needs (the shared library and the service).
COPY pyproject.toml uv.lock ./
COPY libs/ libs/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "crm-${SERVICE}"

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
# A fixed numeric user (Kubernetes' runAsNonRoot can verify a number, not a name), and no
# pip/setuptools in the system interpreter: nothing in this image installs anything.
RUN groupadd --system --gid 10001 crm \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin crm \
 && (python -m pip uninstall --yes --quiet pip setuptools wheel || true)
COPY --from=builder /app/.venv /app/.venv
# CRM_SERVICE names the service for the `crm-service` launcher (crm-common), which builds
# nameko's config from the registry and the environment (AMQP_URI, MONGODB_URL, the
# ConfigMap's settings) and runs the service with nameko's runner in its own process:
# PID 1 gets SIGTERM itself, stops consuming and lets in-flight workers finish.
ENV CRM_SERVICE=${SERVICE} \
    METRICS_PORT=9100 \
    PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
EXPOSE 9100
STOPSIGNAL SIGTERM
ENTRYPOINT ["crm-service"]
