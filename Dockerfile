# acestream-orchestrator as a container, next to Gluetun and the proxy (see compose/).
#
#   docker build -t acestream-orchestrator .                                  # python:3.11-slim
#   docker build --build-arg BASE_IMAGE=some/local-python:3.11 -t ... .       # any Debian-like
#       base with python3 (>= 3.11) and its venv module; no registry needed (testbed/build-base-image.sh)
#
# Every Python package is pinned (docker/requirements.lock, checked against pyproject.toml).
# The daemon runs as uid 10001 when the Docker socket's permissions allow it (docker/entrypoint.sh),
# is PID 1 and handles SIGTERM, so `docker stop` is clean within a couple of seconds.
# /var/lib/acestream-orchestrator (state_dir, owned by 10001) holds the streams across restarts:
# mount a volume there (the compose stacks do; a new named volume takes the directory's owner).
# Works with the legacy builder and BuildKit alike (no BuildKit-only syntax).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
# dependencies first: this layer stays cached while only the daemon's sources change
COPY docker/requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --quiet --no-deps -r /tmp/requirements.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reconcilers ./reconcilers
COPY orchestrator ./orchestrator
RUN /opt/venv/bin/pip install --quiet --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --quiet -y setuptools \
 && /opt/venv/bin/python -m pip uninstall --quiet -y pip

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/orchestrator-entrypoint
COPY docker/healthcheck.sh /usr/local/bin/orchestrator-healthcheck
COPY config.example.yaml /usr/local/share/acestream-orchestrator/config.example.yaml
RUN chmod 0755 /usr/local/bin/orchestrator-entrypoint /usr/local/bin/orchestrator-healthcheck \
 && groupadd --system --gid 10001 orchestrator \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin orchestrator \
 && mkdir -p /config /var/lib/acestream-orchestrator \
 && chown 10001:10001 /var/lib/acestream-orchestrator
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    ORCHESTRATOR_API_FILE=/tmp/acestream-orchestrator.api
LABEL org.opencontainers.image.title="acestream-orchestrator" \
      org.opencontainers.image.description="Keeps a pool of AceStream engine containers alive behind Gluetun VPN containers" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
EXPOSE 8000
STOPSIGNAL SIGTERM
# GET /health on the address the daemon listens on (docker/healthcheck.sh: bash, no interpreter)
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/orchestrator-healthcheck"]
ENTRYPOINT ["/usr/local/bin/orchestrator-entrypoint"]
CMD ["--config", "/config/orchestrator.yaml"]
