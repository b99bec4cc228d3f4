# syntax=docker/dockerfile:1.7
# The gRPC gateway's image (build context = the repository root):
#   docker build -f deploy/docker/gateway.Dockerfile -t crm-gateway .
# The builder generates the crm.v1 gRPC code with grpcio-tools (a dev dependency, kept in
# a throwaway environment of the builder), then installs the gateway and its locked
# dependencies as wheels into /app/.venv: grpcio, pika, crm-common; no eventlet, no nameko.
ARG PYTHON_IMAGE=python:3.11-slim-trixie
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON=python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-workspace --package crm-gateway
COPY pyproject.toml uv.lock ./
COPY libs/ libs/
COPY gateway/ gateway/
COPY proto/ proto/
COPY scripts/gen-proto.sh scripts/gen-proto.sh
# scripts/gen-proto.sh runs protoc from /src/.venv: the dev group only, never shipped.
RUN --mount=type=cache,target=/root/.cache/uv \
    UV_PROJECT_ENVIRONMENT=/src/.venv UV_COMPILE_BYTECODE=0 uv sync --frozen --only-group dev \
 && FORCE=1 scripts/gen-proto.sh
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package crm-gateway

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 crm \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin crm \
 && (python -m pip uninstall --yes --quiet pip setuptools wheel || true)
COPY --from=builder /app/.venv /app/.venv
# On SIGTERM the gateway marks itself NOT_SERVING, refuses new calls and gives in-flight
# ones GATEWAY_GRACE seconds; Kubernetes' terminationGracePeriodSeconds must exceed it.
ENV GATEWAY_ADDR=0.0.0.0:50051 \
    METRICS_PORT=9100 \
    PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
EXPOSE 50051 9100
STOPSIGNAL SIGTERM
ENTRYPOINT ["crm-gateway"]
