# pypilot container image: pypilot as PID 1 (ENTRYPOINT), supervising the jobs of $CONTAINERPILOT.
#
#   docker build -t pypilot .                                  # on the official slim Python image
#   docker build --build-arg BASE=my-python-base -t pypilot .  # any Debian-like image with python3 >= 3.11
#
# The build stage compiles the wheel (cffi C module) and installs it with its runtime dependencies into a
# venv at /opt/pypilot; the runtime stage copies only that venv (no compiler, no pip) onto the same base.
ARG BASE=python:3.11-slim-bookworm
# the example config baked in as $CONTAINERPILOT; mount or COPY your own over /etc/containerpilot.json5
ARG CONFIG=examples/pypilot.json5

FROM ${BASE} AS build
ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_WARN_SCRIPT_LOCATION=1
# gcc for the cffi module; headers and venv/ensurepip only when the base lacks them (Debian's python3 does,
# the official python image does not).
RUN set -eux; \
    pkgs="gcc libc6-dev"; \
    inc="$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')"; \
    [ -e "$inc/Python.h" ] || pkgs="$pkgs python3-dev"; \
    python3 -c 'import ensurepip' 2>/dev/null || pkgs="$pkgs python3-venv"; \
    apt-get update; \
    apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/pypilot
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eux; \
    /opt/pypilot/bin/pip wheel --wheel-dir /wheels .; \
    /opt/pypilot/bin/pip install --no-index --find-links /wheels pypilot; \
    /opt/pypilot/bin/pip uninstall -y pip setuptools; \
    rm -f /opt/pypilot/bin/activate* /opt/pypilot/bin/Activate.ps1; \
    cd / && /opt/pypilot/bin/python -c 'import pypilot._reaper'

FROM ${BASE}
ARG CONFIG
COPY --from=build /opt/pypilot /opt/pypilot
COPY ${CONFIG} /etc/containerpilot.json5
# only the pypilot command goes on PATH: the jobs' own python3 stays the base image's, not pypilot's venv
RUN ln -s /opt/pypilot/bin/pypilot /usr/local/bin/pypilot
ENV CONTAINERPILOT=/etc/containerpilot.json5
# The control socket answers -ping once pypilot is up (an older pypilot without it fails the check).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["pypilot", "-ping"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["pypilot"]
