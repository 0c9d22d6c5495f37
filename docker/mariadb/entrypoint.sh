#!/bin/bash
# Entrypoint of torpor/mariadb. On the first start with an empty datadir
# it initializes one (mariadb-install-db) and creates the accounts the
# environment asks for; then it runs mariadbd in the foreground as the
# mysql user. The variables have the official `mariadb` image's names, so
# a compose file works with either image:
#
#   MARIADB_ROOT_PASSWORD[_FILE]        root's password, for root@localhost
#                                       and root@$MARIADB_ROOT_HOST ('%')
#   MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1 root without a password (tests only)
#   MARIADB_RANDOM_ROOT_PASSWORD=1      a random one, printed to the log
#   MARIADB_DATABASE                    a database to create
#   MARIADB_USER, MARIADB_PASSWORD[_FILE]
#                                       an account (mysql_native_password,
#                                       the plugin Torpor logs in with),
#                                       all privileges on MARIADB_DATABASE
#   /docker-entrypoint-initdb.d/*.sql, *.sql.gz, *.sh
#                                       run once, in name order, as root,
#                                       after the accounts exist
#
# Arguments starting with '-' go to mariadbd; any other command (a shell,
# mariadb-dump) runs as given.
set -euo pipefail

log() { echo "$(date -u '+%F %T') [entrypoint] $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

if [ "${1:0:1}" = - ]; then
    set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then
    exec "$@"
fi

# The datadir the server will use, options in files and arguments included.
# awk reads to the end: exiting early would kill mariadbd with SIGPIPE.
datadir=$("$@" --verbose --help 2>/dev/null | awk '$1 == "datadir" && !found { print $2; found = 1 }' || true)
datadir=${datadir:-/var/lib/mysql/}

shopt -s nullglob

if [ "$(id -u)" = 0 ]; then
    # A volume or bind mount may arrive owned by anyone; the server runs as
    # mysql and must own its files. Then start again as mysql.
    mkdir -p "$datadir" /run/mysqld
    find "$datadir" /run/mysqld \! -user mysql -exec chown mysql:mysql {} +
    exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" "$@"
fi

# VAR_FILE names a file holding VAR's value (Docker secrets), so a secret
# need not sit in the container's environment.
file_env() {
    local var=$1 file_var="${1}_FILE"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        die "both $var and $file_var are set; give one"
    fi
    if [ -n "${!file_var:-}" ]; then
        export "$var"="$(<"${!file_var}")"
    fi
}

# A string as the body of a single-quoted SQL literal.
sql_string() {
    local s=${1//\\/\\\\}
    printf '%s' "${s//\'/\\\'}"
}
# A name as the body of a backquoted SQL identifier.
sql_name() { printf '%s' "${1//\`/\`\`}"; }

initialize() {
    file_env MARIADB_ROOT_PASSWORD
    file_env MARIADB_PASSWORD
    local root_password=${MARIADB_ROOT_PASSWORD:-}
    if [ -z "$root_password" ]; then
        if [ -n "${MARIADB_RANDOM_ROOT_PASSWORD:-}" ]; then
            root_password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
            log "GENERATED ROOT PASSWORD: $root_password"
        elif [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" ]; then
            die "the datadir is empty and no root password is set: give MARIADB_ROOT_PASSWORD, MARIADB_RANDOM_ROOT_PASSWORD=1 or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1"
        fi
    fi
    if [ -n "${MARIADB_USER:-}" ]; then
        [ "$MARIADB_USER" != root ] || die "MARIADB_USER=root: root is set up with MARIADB_ROOT_PASSWORD"
        [ -n "${MARIADB_PASSWORD:-}" ] || die "MARIADB_USER is set but MARIADB_PASSWORD is not"
    fi

    log "initializing the datadir $datadir"
    local out
    # 'normal' root authentication: a root@localhost with an empty password
    # that the steps below can use whatever uid runs them, and then lock.
    if ! out=$(mariadb-install-db --datadir="$datadir" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve "${@:2}" 2>&1); then
        echo "$out" >&2
        die "mariadb-install-db failed"
    fi

    # A server only this script can reach (no network) to create accounts.
    local socket=/run/mysqld/initialize.sock
    "$@" --skip-networking --socket="$socket" --skip-log-bin &
    local pid=$!
    local client=(mariadb --protocol=socket --socket="$socket" --user=root --skip-password)
    for _ in $(seq 300); do
        if "${client[@]}" --execute='SELECT 1' >/dev/null 2>&1; then
            break
        fi
        kill -0 "$pid" 2>/dev/null || die "mariadbd stopped during initialization"
        sleep 0.1
    done

    {
        echo "SET @@SESSION.SQL_LOG_BIN = 0;"
        # Backslash escaping as sql_string does it.
        echo "SET @@SESSION.SQL_MODE = REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');"
        # mariadb-install-db also made root@<hostname>, root@127.0.0.1,
        # root@::1 and anonymous accounts: keep root@localhost and the
        # system accounts only.
        echo "DELETE FROM mysql.global_priv WHERE user NOT IN ('mariadb.sys', 'root') OR host <> 'localhost';"
        echo "DELETE FROM mysql.proxies_priv WHERE user <> 'root' OR host <> 'localhost';"
        echo "FLUSH PRIVILEGES;"
        # The image's HEALTHCHECK pings as the OS user mysql over the socket:
        # an account with no privileges, so pings log no access denied.
        echo "CREATE USER 'mysql'@'localhost' IDENTIFIED VIA unix_socket;"
        if [ -n "${MARIADB_DATABASE:-}" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$(sql_name "$MARIADB_DATABASE")\`;"
        fi
        if [ -n "${MARIADB_USER:-}" ]; then
            echo "CREATE USER '$(sql_string "$MARIADB_USER")'@'%' IDENTIFIED BY '$(sql_string "$MARIADB_PASSWORD")';"
            if [ -n "${MARIADB_DATABASE:-}" ]; then
                echo "GRANT ALL ON \`$(sql_name "$MARIADB_DATABASE")\`.* TO '$(sql_string "$MARIADB_USER")'@'%';"
            fi
        fi
    } | "${client[@]}" || die "creating the accounts failed"
    # The SQL goes on stdin, never in arguments: no password in a process list.

    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql)
                log "running $f"
                "${client[@]}" ${MARIADB_DATABASE:+"--database=$MARIADB_DATABASE"} <"$f"
                ;;
            *.sql.gz)
                log "running $f"
                gzip -dc "$f" | "${client[@]}" ${MARIADB_DATABASE:+"--database=$MARIADB_DATABASE"}
                ;;
            *.sh)
                log "running $f"
                # shellcheck disable=SC1090 # the user's script, sourced like the official image does
                . "$f"
                ;;
            *) log "ignoring $f" ;;
        esac
    done

    # Root gets its password last, so the steps above need none.
    local host=${MARIADB_ROOT_HOST:-%}
    {
        echo "SET @@SESSION.SQL_LOG_BIN = 0;"
        echo "SET @@SESSION.SQL_MODE = REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');"
        if [ "$host" != localhost ]; then
            echo "CREATE USER 'root'@'$(sql_string "$host")' IDENTIFIED BY '$(sql_string "$root_password")';"
            echo "GRANT ALL ON *.* TO 'root'@'$(sql_string "$host")' WITH GRANT OPTION;"
        fi
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(sql_string "$root_password")';"
    } | "${client[@]}" || die "setting root's password failed"

    # SIGTERM is a clean shutdown for mariadbd; no credentials needed.
    kill -TERM "$pid"
    wait "$pid" || die "mariadbd did not shut down cleanly after initialization"
    log "initialized"
}

if [ ! -d "$datadir/mysql" ]; then
    initialize "$@"
fi
exec "$@"
