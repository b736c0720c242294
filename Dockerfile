# syntax=docker/dockerfile:1
# share-gateway: multi-stage, slim, non-root, read-only-root-filesystem friendly.
#   docker build -t share-gateway .                       # the gateway
#   docker build -t share-gateway-demo --build-arg EXTRAS=demo .   # + the demo agent
#   docker run -e SHARE_GATEWAY_UPSTREAM=http://agent:8083 -e SHARE_GATEWAY_AUTH__MODE=jwt|trusted-header … share-gateway
# (serve refuses the default auth.mode none on a non-loopback listener: choose one)
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --upgrade pip \
 && pip install ".${EXTRAS:+[$EXTRAS]}" \
 && python -m compileall -q /opt/venv

FROM python:${PYTHON_VERSION}-slim
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
 && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
# Bytecode is compiled at build time; nothing is written at run time except the
# SQLite file under /data (mount a volume) and temporary files under /tmp
# (mount an emptyDir when the root filesystem is read-only).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHARE_GATEWAY_LISTEN=0.0.0.0:8080 \
    SHARE_GATEWAY_ADMIN_LISTEN=0.0.0.0:9090 \
    SHARE_GATEWAY_STORE=sqlite:////data/shares.db
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["share-gateway"]
CMD ["serve"]
