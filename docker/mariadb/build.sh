#!/usr/bin/env bash
# Builds the image torpor/mariadb:10.11 from Debian 12's mariadb-server,
# with no registry: debootstrap makes the rootfs (cached outside the
# repository, see docker/lib.sh), `docker import` makes the image.
#
#   docker/mariadb/build.sh          # build unless the image is up to date
#   docker/mariadb/build.sh --force  # import again (the rootfs cache is reused)
#   TORPOR_DOCKER_REBUILD_ROOTFS=1 docker/mariadb/build.sh --force   # from scratch
#
# TORPOR_MARIADB_IMAGE names another image. Needs root (or sudo) for
# debootstrap and a Docker engine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$here/../lib.sh"

image=${TORPOR_MARIADB_IMAGE:-torpor/mariadb:10.11}
force=
case "${1:-}" in
    "") ;;
    --force) force=1 ;;
    -h | --help)
        sed -n '2,11s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *) die "unknown argument '$1' (try --help)" ;;
esac

require_docker
# Up to date = built by this very recipe (scripts, entrypoint, config).
recipe=$(recipe_hash "$0" "$here/entrypoint.sh" "$here/90-torpor-docker.cnf")
if [ -z "$force" ] && [ "$(image_label "$image" org.torpor.recipe)" = "$recipe" ]; then
    log "$image is up to date"
    exit 0
fi

setup_mariadb() {
    local root=$1
    # Debian's postinst initialized a datadir for the build chroot. Each
    # container's volume must initialize its own, with its own accounts:
    # the entrypoint does that when it finds the datadir empty.
    as_root find "$root/var/lib/mysql" -mindepth 1 -delete
    as_root mkdir -p "$root/run/mysqld" "$root/docker-entrypoint-initdb.d"
    as_root chroot "$root" chown mysql:mysql /var/lib/mysql /run/mysqld
}

started=$SECONDS
# mariadb-backup: a relocation copies a running server with it
# (`mariadb-backup --backup --stream`, then `mbstream -x` and `--prepare`
# in a helper container of this image on the target's volume).
build_rootfs mariadb setup_mariadb mariadb-server mariadb-client mariadb-backup
rootfs=$ROOTFS
# shellcheck disable=SC2016 # ${Version} is dpkg-query's, not the shell's
version=$(as_root chroot "$rootfs" dpkg-query -W -f '${Version}' mariadb-server)

overlay=$(as_root mktemp -d)
trap 'as_root rm -rf "$overlay"' EXIT
as_root chmod 755 "$overlay"
as_root install -D -o 0 -g 0 -m 755 "$here/entrypoint.sh" "$overlay/usr/local/bin/docker-entrypoint.sh"
as_root install -D -o 0 -g 0 -m 644 "$here/90-torpor-docker.cnf" \
    "$overlay/etc/mysql/mariadb.conf.d/90-torpor-docker.cnf"

log "importing $image (mariadb-server $version)"
import_image "$rootfs" "$overlay" "$image" \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'CMD ["mariadbd"]' \
    'EXPOSE 3306' \
    'VOLUME /var/lib/mysql' \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    'HEALTHCHECK --interval=5s --timeout=3s --start-period=60s CMD ["setpriv", "--reuid=mysql", "--regid=mysql", "--clear-groups", "mariadb-admin", "--user=mysql", "--silent", "ping"]' \
    "LABEL org.torpor.recipe=$recipe org.torpor.mariadb-version=$version"
log "built $image in $((SECONDS - started)) s ($(docker image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
