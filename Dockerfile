# pypilot container image: pypilot as PID 1 (ENTRYPOINT), supervising the jobs of $CONTAINERPILOT.
#
#   docker build -t pypilot .                                   # on the official slim Python image
#   docker build --build-arg BASE=nginx:bookworm -t my-nginx .  # nginx plus pypilot: BASE is any image
#   docker build --build-arg BASE=scratch ...                   # even one with no shell and no libc
#
# BUILD_BASE (a Python 3.11+ image, Debian-like: apt-get) builds the wheel with the C module, installs it with
# its runtime dependencies into a throw-away venv, and runs scripts/bundle.py: /opt/pypilot becomes a
# self-contained tree with its own interpreter, loader, glibc and libraries (README, "In a container image").
# BASE (default: the same slim Python image) only receives that tree: the final stage RUNs nothing, so BASE
# needs no shell, no Python and no libc; pypilot's jobs run the BASE image's own programs and libraries.
ARG BUILD_BASE=python:3.11-slim-bookworm
ARG BASE=python:3.11-slim-bookworm
# the example config baked in as $CONTAINERPILOT (its web job runs the image's python3); mount or COPY your
# own over /etc/containerpilot.json5
ARG CONFIG=examples/pypilot.json5

FROM ${BUILD_BASE} AS build
ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_WARN_SCRIPT_LOCATION=1
# gcc for the cffi module, patchelf for the bundle; headers and venv/ensurepip only when the base lacks them
# (Debian's python3 does, the official python image does not).
RUN set -eux; \
    pkgs="gcc libc6-dev patchelf"; \
    inc="$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')"; \
    [ -e "$inc/Python.h" ] || pkgs="$pkgs python3-dev"; \
    python3 -c 'import ensurepip' 2>/dev/null || pkgs="$pkgs python3-venv"; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /build/venv
WORKDIR /src
COPY . .
# /rootfs is exactly what the final stage gets: the bundle, and `pypilot` on PATH as a symlink (made here,
# so the final stage needs no RUN)
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eux; \
    /build/venv/bin/pip wheel --wheel-dir /wheels .; \
    /build/venv/bin/pip install --no-index --find-links /wheels pypilot; \
    /build/venv/bin/python scripts/bundle.py --prefix /opt/pypilot; \
    mkdir -p /rootfs/opt /rootfs/usr/local/bin; \
    mv /opt/pypilot /rootfs/opt/pypilot; \
    ln -s /opt/pypilot/bin/pypilot /rootfs/usr/local/bin/pypilot

FROM ${BASE}
ARG CONFIG
COPY --from=build /rootfs/ /
COPY ${CONFIG} /etc/containerpilot.json5
ENV CONTAINERPILOT=/etc/containerpilot.json5
# The control socket answers -ping once pypilot is up (an older pypilot without it fails the check).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/opt/pypilot/bin/pypilot", "-ping"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/pypilot/bin/pypilot"]
