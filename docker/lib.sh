# shellcheck shell=bash
# Shared by docker/*/build.sh: build Docker images from Debian packages
# with no registry at all. debootstrap makes a Debian rootfs in a cache
# folder outside the repository, `docker import` turns it (plus a few files
# from the repository) into an image. Sourced, not run.
#
# Environment:
#   TORPOR_DOCKER_CACHE  where rootfs trees and downloaded .debs are kept
#                        (default: $XDG_CACHE_HOME/torpor/docker, or
#                        ~/.cache/torpor/docker)
#   DEBIAN_MIRROR        Debian archive (default: http://deb.debian.org/debian)
#   DEBIAN_SECURITY      security archive (default: http://deb.debian.org/debian-security)

DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
TORPOR_DOCKER_CACHE=${TORPOR_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/torpor/docker}
# set -e also inside $(...).
shopt -s inherit_errexit

log() { echo "[docker/$(basename "$(dirname "$0")") $(date +%T)] $*" >&2; }
die() {
    echo "error: $*" >&2
    exit 1
}

# debootstrap, chroot and reading root-owned rootfs files need root; the
# rest (docker) only needs access to the engine's socket.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

require_docker() {
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
        die "the Docker engine does not answer (is dockerd running, may $(id -un) use its socket?)"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# recipe_hash FILE...: what an image is made of, so build.sh can tell an
# up-to-date image from a stale one without building anything.
recipe_hash() {
    {
        echo "$DEBIAN_SUITE $DEBIAN_MIRROR $DEBIAN_SECURITY"
        cat "${BASH_SOURCE[0]}" "$@"
    } | sha256sum | cut -c1-16
}

image_label() {
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

ensure_debootstrap() {
    if command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ]; then
        return
    fi
    log "installing debootstrap"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq debootstrap >/dev/null
}

# build_rootfs NAME SETUP_FUNCTION PACKAGE...
#
# Makes (or reuses) $TORPOR_DOCKER_CACHE/rootfs/NAME and sets ROOTFS to
# it: a minbase bookworm with PACKAGES, upgraded from bookworm-updates and
# bookworm-security, then SETUP_FUNCTION run with the tree's path. The tree
# is reused while its stamp matches: the suite, mirrors, packages, this
# file and SETUP_FUNCTION's text, so editing what goes into a tree rebuilds
# it. Built in a temporary folder and renamed, so an interrupted build never
# leaves a half tree that looks finished; a lock keeps two builds of one
# tree apart. Sets a global rather than printing the path: inside $(...)
# bash would not stop at a failing step.
build_rootfs() {
    local name=$1 setup=$2
    shift 2
    local dir="$TORPOR_DOCKER_CACHE/rootfs"
    local root="$dir/$name" build_log="$dir/$name.log"
    mkdir -p "$TORPOR_DOCKER_CACHE/debs" "$dir"
    local lock
    exec {lock}>>"$root.lock"
    flock "$lock"
    local stamp
    stamp=$(
        {
            echo "$DEBIAN_SUITE $DEBIAN_MIRROR $DEBIAN_SECURITY $*"
            cat "${BASH_SOURCE[0]}"
            declare -f "$setup"
        } | sha256sum | cut -d' ' -f1
    )
    # shellcheck disable=SC2034 # the build scripts read it
    ROOTFS=$root
    if [ -z "${TORPOR_DOCKER_REBUILD_ROOTFS:-}" ] && [ -f "$root.stamp" ] &&
        [ "$(cat "$root.stamp")" = "$stamp" ] && [ -d "$root" ]; then
        log "reusing rootfs $root"
        exec {lock}>&-
        return
    fi
    ensure_debootstrap
    local tmp="$root.tmp"
    as_root rm -rf "$tmp"
    rm -f "$root.stamp"
    local include=()
    if [ $# -gt 0 ]; then
        include=("--include=$(
            IFS=,
            echo "$*"
        )")
    fi
    log "debootstrap $DEBIAN_SUITE ${include[*]} into $tmp (log: $build_log)"
    # --cache-dir keeps the .debs, so a rebuild downloads only what changed.
    as_root debootstrap --variant=minbase "${include[@]}" \
        --cache-dir="$TORPOR_DOCKER_CACHE/debs" \
        "$DEBIAN_SUITE" "$tmp" "$DEBIAN_MIRROR" >"$build_log" 2>&1
    upgrade_rootfs "$tmp" >>"$build_log" 2>&1
    "$setup" "$tmp" >>"$build_log" 2>&1
    slim_rootfs "$tmp"
    as_root rm -rf "$root"
    as_root mv "$tmp" "$root"
    echo "$stamp" >"$root.stamp"
    exec {lock}>&-
}

# debootstrap installs bookworm as released; point releases and security
# fixes (MariaDB gets several a year) come from the other two suites.
upgrade_rootfs() {
    local root=$1
    as_root tee "$root/etc/apt/sources.list" >/dev/null <<EOF
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb $DEBIAN_SECURITY $DEBIAN_SUITE-security main
EOF
    # No service may start inside the build chroot.
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$root/usr/sbin/policy-rc.d" >/dev/null
    as_root chmod 755 "$root/usr/sbin/policy-rc.d"
    as_root chroot "$root" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root chroot "$root" \
        apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade
    as_root rm -f "$root/usr/sbin/policy-rc.d"
}

# What an image never uses: package lists and .debs, docs, man pages,
# locales other than C. Saves about a third of a minbase.
slim_rootfs() {
    local root=$1
    as_root chroot "$root" apt-get clean
    as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/root/.bash_history
    # Copyright files stay: they go wherever the packages go.
    as_root find "$root/usr/share/doc" ! -type d ! -name copyright -delete
    as_root find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    as_root find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' \
        -exec rm -rf {} +
    # The build host's resolver and name mean nothing in a container;
    # Docker bind-mounts its own.
    as_root truncate -s 0 "$root/etc/resolv.conf" "$root/etc/hostname"
}

# import_image ROOTFS OVERLAY IMAGE CHANGE...
#
# docker import of ROOTFS with the files of OVERLAY (a folder laid out like
# /, owned by root) added, and each CHANGE as a --change Dockerfile
# instruction. The overlay's files must be new paths: docker import refuses
# a tar that names a path twice, so folders the rootfs already has are not
# listed again.
import_image() {
    local root=$1 overlay=$2 image=$3
    shift 3
    local changes=()
    for change in "$@"; do
        changes+=(--change "$change")
    done
    local members path
    members=$(mktemp)
    # shellcheck disable=SC2064 # expand now: the variable is local
    trap "rm -f '$members'" RETURN
    while IFS= read -r path; do
        if [ -d "$overlay/$path" ] && [ ! -L "$overlay/$path" ] && as_root test -d "$root/$path"; then
            continue
        fi
        if as_root test -e "$root/$path" || as_root test -L "$root/$path"; then
            die "overlay file $path is already in the rootfs"
        fi
        echo "$path" >>"$members"
    done < <(cd "$overlay" && find . -mindepth 1 | sort)
    local previous
    previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    # --numeric-owner: the rootfs's users (mysql, torpor) exist only in its
    # own /etc/passwd, not the host's. --no-recursion is positional: it
    # applies to the overlay's listed members only.
    as_root tar --numeric-owner -C "$root" -c . --no-recursion -C "$overlay" -T "$members" |
        docker import "${changes[@]}" \
            --message "built by docker/$(basename "$(dirname "$0")")/build.sh from Debian $DEBIAN_SUITE packages" \
            - "$image" >/dev/null
    # The image this one replaces would linger untagged (hundreds of MB a
    # rebuild); it stays only while a container still uses it.
    if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$image")" ]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
}
