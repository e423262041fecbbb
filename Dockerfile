# The gpuherd broker image, for the per-node DaemonSet (deploy/kubernetes/).
#
#   python -m build --wheel && docker build -t ghcr.io/gpuherd/gpuherd:0.1.0 .
#
# Stage one builds the wheel from this checkout; stage two installs it with the [kubernetes]
# extra from binary wheels only, so no compiler is ever installed, in either stage.
ARG PYTHON=3.12

FROM python:${PYTHON}-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
COPY examples/demo.yaml ./examples/demo.yaml
RUN PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    pip wheel --no-deps --wheel-dir /dist .

FROM python:${PYTHON}-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="gpuherd" \
      org.opencontainers.image.description="gpuherd broker: shares a node's NVIDIA GPUs between services and jobs without OOM crashes or lost work" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/gpuherd/gpuherd" \
      org.opencontainers.image.documentation="https://github.com/gpuherd/gpuherd/tree/main/docs" \
      org.opencontainers.image.vendor="gpuherd"
COPY --from=wheel /dist/ /tmp/wheels/
COPY deploy/docker/install.sh /tmp/install.sh
RUN PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 sh /tmp/install.sh /tmp/wheels \
    && rm -rf /tmp/install.sh /tmp/wheels
# The NVIDIA container toolkit mounts the driver's libraries (NVML) when the pod asks for
# these capabilities; the broker reads memory and processes, it computes nothing itself.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/gpuherd"]
ENTRYPOINT ["gpuherd"]
CMD ["serve", "-c", "/etc/gpuherd/gpuherd.yaml", "--state", "/var/lib/gpuherd", "--socket", "/run/gpuherd/gpuherd.sock"]
