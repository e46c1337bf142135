#!/usr/bin/env bash
# Build the pypilot container images with podman, from bases made locally (no registry is reached).
#
#   tests/image/build.sh            # installs podman/runc/debootstrap/busybox-static if missing, then builds
#                                   # localhost/pypilot:test (BASE = a Debian python3 base), :test-minbase
#                                   # (BASE = Debian minbase, no python3) and :test-busybox (BASE = scratch +
#                                   # a static busybox: no libc at all); BUILD_BASE is the Python base for all
#   tests/image/build.sh python     # only the variants named (python, minbase, busybox)
#   eval "$(tests/image/build.sh --env)"   # then: podman $PODMAN_ARGS run --rm localhost/pypilot:test ...
#
# Everything lives under $PYPILOT_IMAGE_CACHE (default /var/tmp/pypilot-image-cache): the debootstrap rootfs
# tarball (made once), podman's own store (--root) and the containers.conf that CONTAINERS_CONF names
# (runc, modest ulimits, cgroupfs). Nothing under /etc is edited. Knobs (environment):
#   PYPILOT_IMAGE            image to build                    (localhost/pypilot:test)
#   PYPILOT_IMAGE_CONTEXT    build context                     (the repository)
#   PYPILOT_IMAGE_CACHE      cache and store directory         (/var/tmp/pypilot-image-cache)
#   PYPILOT_IMAGE_RUNROOT    podman --runroot                  (/run/pypilot-image)
#   DEBIAN_MIRROR            mirror for debootstrap            (the first one in /etc/apt/sources.list*)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=${PYPILOT_IMAGE:-localhost/pypilot:test}
context=${PYPILOT_IMAGE_CONTEXT:-$repo}
cache=${PYPILOT_IMAGE_CACHE:-/var/tmp/pypilot-image-cache}
runroot=${PYPILOT_IMAGE_RUNROOT:-/run/pypilot-image}
suite=bookworm
debian_image=localhost/pypilot-debian:$suite
# keyed by the host's CA bundle, which the Python base trusts (see 3.)
ca_sum=$(sha256sum /etc/ssl/certs/ca-certificates.crt 2>/dev/null | cut -c1-12 || echo none)
python_image=localhost/pypilot-python:$suite-$ca_sum
rootfs_tar=$cache/debian-$suite-minbase.tar
busybox_bin=/bin/busybox # Debian's busybox-static
busybox_image=localhost/pypilot-busybox:2-$(sha256sum "$busybox_bin" 2>/dev/null | cut -c1-12 || echo none)
variants_all=(python minbase busybox)
# the image of each variant and the BASE it is built on
declare -A variant_image=([python]=$image [minbase]=$image-minbase [busybox]=$image-busybox)
declare -A variant_base=([python]=$python_image [minbase]=$debian_image [busybox]=$busybox_image)

export CONTAINERS_CONF=$cache/containers.conf
podman_args=(--root "$cache/store" --runroot "$runroot/run")

if [[ ${1:-} == --env ]]; then
    printf 'export CONTAINERS_CONF=%q\n' "$CONTAINERS_CONF"
    printf 'export PODMAN_ARGS=%q\n' "${podman_args[*]}"
    printf 'export PYPILOT_IMAGE=%q\n' "$image"
    printf 'export PYPILOT_IMAGE_BASE=%q\n' "$python_image"
    for v in "${variants_all[@]}"; do
        printf 'export PYPILOT_IMAGE_%s=%q\n' "${v^^}" "${variant_image[$v]}"
        printf 'export PYPILOT_IMAGE_BASE_%s=%q\n' "${v^^}" "${variant_base[$v]}"
    done
    exit 0
fi

log() { printf '[build.sh %(%T)T] %s\n' -1 "$*" >&2; }
t0=$SECONDS

# 1. Tools. crun (podman's default) fails here: cgroups v1 hybrid, no CAP_SYS_RESOURCE; runc works.
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
# the scratch base's shell: one static binary (Debian's busybox-static, not the dynamic busybox)
if ! file -L "$busybox_bin" 2>/dev/null | grep -q 'statically linked' &&
    ! { [[ -x $busybox_bin ]] && ! ldd "$busybox_bin" >/dev/null 2>&1; }; then
    missing+=(busybox-static)
fi
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    busybox_image=localhost/pypilot-busybox:2-$(sha256sum "$busybox_bin" | cut -c1-12)
    variant_base[busybox]=$busybox_image
fi
variants=("${@:-${variants_all[@]}}")

mkdir -p "$cache" "$runroot"
cat >"$CONTAINERS_CONF.tmp" <<CONF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$runroot/tmp"
CONF
mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
pm() { podman "${podman_args[@]}" "$@"; }

# 2. The Debian base: debootstrap minbase once, kept as a tarball, imported into the store when absent.
if [[ ! -s $rootfs_tar ]]; then
    mirror=${DEBIAN_MIRROR:-$(grep -rhoE '(URIs:|^deb)[[:space:]]+https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $2}' | head -n1 || true)}
    mirror=${mirror:-http://deb.debian.org/debian}
    log "debootstrap --variant=minbase $suite from $mirror"
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
        tail -n 30 "$cache/debootstrap.log" >&2
        exit 1
    }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -cf "$rootfs_tar.tmp" .
    mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$rootfs"
    trap - EXIT
fi
if ! pm image exists "$debian_image"; then
    log "importing $rootfs_tar as $debian_image"
    pm import --quiet --change 'CMD ["/bin/bash"]' "$rootfs_tar" "$debian_image" >/dev/null
fi

# 3. A Python base like the official slim one, with Debian's python3 (what the Dockerfile's BASE is given).
#    It trusts the host's CA bundle, so that pip in the build reaches PyPI wherever the host does (also
#    through a TLS-intercepting proxy that only the host's bundle knows).
if ! pm image exists "$python_image"; then
    log "building $python_image (Debian's python3)"
    ctx=$cache/python-base
    mkdir -p "$ctx"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca-certificates.crt"
    cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM $debian_image
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
CONTAINERFILE
    pm build --format docker -t "$python_image" "$ctx" >"$cache/python-base.log" 2>&1 || {
        tail -n 30 "$cache/python-base.log" >&2
        exit 1
    }
fi

# 4. The scratch base: a static busybox as /bin/busybox and its commands as relative symlinks to it
#    (`busybox --install -s` would write absolute paths of the place it ran), /tmp, nothing else.
if [[ " ${variants[*]} " == *" busybox "* ]] && ! pm image exists "$busybox_image"; then
    log "making $busybox_image (scratch + $busybox_bin)"
    bb=$(mktemp -d "$cache/busybox.XXXXXX")
    mkdir -p "$bb/bin" "$bb/sbin" "$bb/usr/bin" "$bb/usr/sbin" "$bb/tmp" "$bb/etc" "$bb/run" "$bb/var" "$bb/root"
    chmod 1777 "$bb/tmp"
    ln -s ../run "$bb/var/run" # as in Alpine: where the control socket goes by default
    cp "$busybox_bin" "$bb/bin/busybox"
    "$busybox_bin" --list-full | while read -r path; do
        case $path in bin/busybox | linuxrc | sbin/init) continue ;; esac
        [[ -e $bb/$path ]] || ln -s "$(realpath --relative-to="$bb/$(dirname "$path")" "$bb/bin/busybox")" \
            "$bb/$path"
    done
    tar --numeric-owner --owner=0 --group=0 -C "$bb" -cf "$bb.tar" .
    pm import --quiet --change 'CMD ["/bin/sh"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$bb.tar" "$busybox_image" >/dev/null
    rm -rf "$bb" "$bb.tar"
fi

# 5. The images: BUILD_BASE is the Python base for every variant, so the build stage's layers are made once
#    and shared; only the final stage (one COPY) differs. Layers cached in the store: a warm build only redoes
#    what changed.
for v in "${variants[@]}"; do
    img=${variant_image[$v]:?unknown variant $v (python, minbase, busybox)}
    build_log=$cache/build-${img//[^A-Za-z0-9]/_}.log
    old_id=$(pm image inspect --format '{{.Id}}' "$img" 2>/dev/null || true)
    log "building $img (BASE=${variant_base[$v]}) from $context"
    pm build --format docker --layers --build-arg "BUILD_BASE=$python_image" \
        --build-arg "BASE=${variant_base[$v]}" -t "$img" -f "$repo/Dockerfile" "$context" >"$build_log" 2>&1 || {
        tail -n 40 "$build_log" >&2
        exit 1
    }
    mv "$build_log" "$cache/build-$v.log" # the last good build's log
    new_id=$(pm image inspect --format '{{.Id}}' "$img")
    if [[ -n $old_id && $old_id != "$new_id" ]]; then
        pm rmi "$old_id" >/dev/null 2>&1 || true # the previous build's image, now untagged
    fi
done
# Untagged images of earlier builds are the build-stage cache (removing one removes its cached parents too):
# keep them, but not without bound.
dangling=$(pm images -q --filter dangling=true)
if (($(wc -w <<<"$dangling") > 10)); then
    log "removing $(wc -w <<<"$dangling") untagged images of earlier builds"
    # shellcheck disable=SC2086 # one id a word
    pm rmi -f $dangling >/dev/null 2>&1 || true
fi
log "built ${variants[*]} in $((SECONDS - t0)) s"
