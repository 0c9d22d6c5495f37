#!/usr/bin/env bash
# Builds the image torpor/torpor:dev with no registry: a minimal Debian 12
# rootfs made by debootstrap (cached outside the repository, see
# docker/lib.sh), the release `torpor` binary of this workspace, a non-root
# user and the default configuration /etc/torpor/torpor.toml.
#
#   docker/torpor/build.sh                  # cargo build --release, then import
#                                           # unless the image already has
#                                           # this binary and recipe
#   docker/torpor/build.sh --force          # import again
#   docker/torpor/build.sh --binary PATH    # use a torpor binary built elsewhere
#                                           # (it must run on Debian 12's glibc)
#
# TORPOR_IMAGE names another image. Needs root (or sudo) for debootstrap,
# cargo, and a Docker engine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$here/../lib.sh"

image=${TORPOR_IMAGE:-torpor/torpor:dev}
# Fixed ids, so files mounted into the container can be given to them.
uid=6033
force=
binary=
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=1 ;;
        --binary)
            [ $# -ge 2 ] || die "--binary wants a path"
            binary=$2
            shift
            ;;
        -h | --help)
            sed -n '2,16s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done

require_docker
started=$SECONDS
if [ -z "$binary" ]; then
    log "cargo build --release -p torpor"
    # cargo says where the binary is, whatever the target folder.
    binary=$(cd "$repo" && cargo build --release --locked -p torpor --bin torpor --message-format=json-render-diagnostics |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    [ -n "$binary" ] || die "cargo did not report the torpor binary"
fi
[ -x "$binary" ] || die "$binary is not an executable"
binary_sha=$(sha256sum "$binary" | cut -c1-16)
recipe=$(recipe_hash "$0" "$here/torpor.toml")
if [ -z "$force" ] && [ "$(image_label "$image" org.torpor.recipe)" = "$recipe" ] &&
    [ "$(image_label "$image" org.torpor.binary-sha256)" = "$binary_sha" ]; then
    log "$image is up to date"
    exit 0
fi

setup_torpor() {
    local root=$1
    as_root chroot "$root" groupadd --system --gid 6033 torpor
    as_root chroot "$root" useradd --system --uid 6033 --gid torpor \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin torpor
    as_root mkdir -p "$root/etc/torpor"
}

# No packages beyond minbase: the binary needs only libc and libgcc_s,
# and bash (for the health check) is there.
build_rootfs torpor setup_torpor
rootfs=$ROOTFS

overlay=$(as_root mktemp -d)
trap 'as_root rm -rf "$overlay"' EXIT
as_root chmod 755 "$overlay"
as_root install -D -o 0 -g 0 -m 755 "$binary" "$overlay/usr/local/bin/torpor"
as_root install -D -o 0 -g 0 -m 644 "$here/torpor.toml" "$overlay/etc/torpor/torpor.toml"
# state_dir: the torpor user's, a volume (the self-signed certificate
# made there at first start survives the container).
as_root install -d -o "$uid" -g "$uid" -m 700 "$overlay/var/lib/torpor"
version=$("$binary" --version | awk '{ print $2 }')

log "importing $image (torpor $version, binary $binary_sha)"
import_image "$rootfs" "$overlay" "$image" \
    'ENTRYPOINT ["torpor", "--config", "/etc/torpor/torpor.toml"]' \
    'CMD []' \
    "USER $uid:$uid" \
    'EXPOSE 6033 6034' \
    'VOLUME /var/lib/torpor' \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'HEALTHCHECK --interval=30s --timeout=3s --start-period=5s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/6033"]' \
    "LABEL org.torpor.recipe=$recipe org.torpor.binary-sha256=$binary_sha org.torpor.version=$version"
log "built $image in $((SECONDS - started)) s ($(docker image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
