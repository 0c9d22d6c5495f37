#!/bin/sh
# Instructions per query of Torpor's worker, counted by callgrind: a figure
# that repeats to a fraction of a percent on a noisy shared machine, where
# CPU time per query does not.
#
#   bench/callgrind.sh [TORPOR_BINARY] [QUERIES]
#
# Starts a private MariaDB (mariadb-install-db + mariadbd on a temporary
# datadir and a free port), Torpor under callgrind in front of it (one
# worker, epoll driver: io_uring is invisible to valgrind), warms up, then
# counts only the worker thread over QUERIES sysbench events of each
# workload, and prints instructions per query, of the whole worker thread
# and of the session tasks alone:
#
# - point-select-text: oltp_point_select with --db-ps-mode=disable, one
#   autocommit text query per event (what `torpor-bench`'s cpu-per-query
#   sends): the pool path, borrow and give-back, per query;
# - point-select-ps: the same with server-side prepared statements;
# - read-only: oltp_read_only (16 queries per event, in a transaction);
# - login: a new connection per `SELECT 1` (torpor-bench's `connect`),
#   per login.
#
# With KEEP=DIR, each workload's dump of the worker thread is kept as
# DIR/NAME.callgrind (for callgrind_annotate).
#
# With TLS=1, sysbench talks to Torpor over TLS (`--mysql-ssl=on`;
# Torpor's self-signed certificate, made in a temporary state_dir), and
# Torpor's backend leg stays plain: the figures are TLS's cost on the
# client leg, to set beside a run without it.
#
# Needs mariadbd, mariadb-install-db, sysbench and valgrind.
set -eu

torpor=${1:-${CARGO_TARGET_DIR:-target}/release/torpor}
events=${2:-5000}
dir=$(mktemp -d /tmp/torpor-callgrind.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cleanup() {
    [ -n "${tpid:-}" ] && kill "$tpid" 2>/dev/null || true
    [ -n "${mpid:-}" ] && kill "$mpid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/install.log" 2>&1
mariadbd --no-defaults --datadir="$dir/data" --socket="$dir/sock" --port="$port" \
    --bind-address=127.0.0.1 --user=root --innodb-buffer-pool-size=256M \
    --skip-log-bin >"$dir/mariadbd.log" 2>&1 &
mpid=$!
i=0
until mariadb --no-defaults -S "$dir/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 300 ] || { cat "$dir/mariadbd.log"; exit 1; }; sleep 0.1
done
mariadb --no-defaults -S "$dir/sock" -uroot -e "
    CREATE DATABASE sbtest;
    CREATE USER bench@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('bench');
    GRANT ALL ON *.* TO bench@'%';"

sb="sysbench --db-driver=mysql --mysql-user=bench --mysql-password=bench --mysql-db=sbtest --tables=1 --table-size=10000"
$sb --mysql-host=127.0.0.1 --mysql-port="$port" oltp_read_only prepare >/dev/null

if [ "${TLS:-0}" = 1 ]; then
    tls="--tls on --state-dir $dir/state"
    ssl="--mysql-ssl=on"
else
    tls="--tls off"
    ssl=""
fi

valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no \
    --callgrind-out-file="$dir/cg.out" \
    "$torpor" --listen "127.0.0.1:$tport" --backend "127.0.0.1:$port" --user bench:bench \
    --workers 1 --io-driver epoll $tls >"$dir/torpor.log" 2>&1 &
tpid=$!
i=0
until mariadb --no-defaults -h127.0.0.1 -P"$tport" -ubench -pbench -e 'SELECT 1' >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 600 ] || { cat "$dir/torpor.log"; exit 1; }; sleep 0.1
done
if [ "${TLS:-0}" = 1 ]; then
    # sysbench 1.0's --mysql-ssl=on loads cacert.pem, client-cert.pem and
    # client-key.pem from its working directory: Torpor's certificate as
    # the CA (it is self-signed), and its pair as a client pair (never
    # sent: Torpor asks for no client certificate).
    ln -s "$dir/state/tls/cert.pem" "$dir/cacert.pem"
    ln -s "$dir/state/tls/cert.pem" "$dir/client-cert.pem"
    ln -s "$dir/state/tls/key.pem" "$dir/client-key.pem"
    cd "$dir"
fi

# The worker thread's instructions in the last dump (the thread that ran
# the most: the control plane and the listener's threads do next to nothing
# while the queries run).
worker_dump() {
    for f in "$dir"/cg.out.*-*; do
        [ -f "$f" ] || continue
        echo "$(sed -n 's/^summary: \([0-9]*\).*/\1/p' "$f" | head -n 1) $f"
    done | sort -n | tail -n 1
}

# Counts the worker's instructions while "$@" runs (instrumentation on,
# counters zeroed; dumped after).
counted() {
    callgrind_control -i on "$tpid" >/dev/null 2>&1
    callgrind_control -z "$tpid" >/dev/null 2>&1
    "$@"
    rm -f "$dir"/cg.out.*
    callgrind_control -d "$tpid" >/dev/null 2>&1
    callgrind_control -i off "$tpid" >/dev/null 2>&1
}

# Prints NAME's instructions per ONE (COUNT of them, MANY) from the last
# dump: report NAME COUNT MANY ONE.
report() {
    name=$1 count=$2 many=$3 one=$4
    dump=$(worker_dump)
    ir=${dump%% *}
    if [ -n "${KEEP:-}" ]; then
        mkdir -p "$KEEP"
        cp "${dump#* }" "$KEEP/$name.callgrind"
    fi
    # The sessions' own share: the session tasks' futures, inclusive (not
    # the runtime's event loop, its timers and the worker's tick, which
    # grow with wall time, and so with valgrind's slowness and the
    # machine's load).
    session=$(callgrind_annotate --inclusive=yes "${dump#* }" 2>/dev/null |
        sed -n 's/^ *\([0-9,]*\) .*Session::run::{{closure}}.*/\1/p' | head -n 1 | tr -d ,)
    echo "$name: $ir instructions / $count $many = $((ir / count)) per $one" \
        "(session tasks: $((${session:-0} / count)))"
}

sysbench_run() {
    $sb $ssl --mysql-host=127.0.0.1 --mysql-port="$tport" --threads=1 --time=0 "$@" run
}

measure() {
    name=$1
    shift
    # Warm-up, not counted: the pool, the statement cache, the allocator.
    sysbench_run --events=500 "$@" >/dev/null
    counted sysbench_run --events="$events" "$@" >"$dir/$name.txt"
    queries=$(sed -n 's/^ *total: *\([0-9]*\)$/\1/p' "$dir/$name.txt" | head -n 1)
    report "$name" "$queries" queries query
}

measure point-select-text oltp_point_select --db-ps-mode=disable
measure point-select-ps oltp_point_select
measure read-only oltp_read_only

# Logins: torpor-bench's `connect` workload (connect, log in, `SELECT 1`,
# quit; a new connection each time) for 3 s, counted by the "logged in"
# lines of Torpor's log. Needs torpor-bench beside the Torpor binary (or
# TORPOR_BENCH); over TLS it is left out (sysbench's files are the
# client's certificates there).
bench=${TORPOR_BENCH:-$(dirname "$torpor")/torpor-bench}
if [ -x "$bench" ] && [ "${TLS:-0}" != 1 ]; then
    connect_for() {
        "$bench" run --target "torpor=127.0.0.1:$tport" --user bench --password bench \
            --database sbtest --workload connect --rounds 1 --duration "$1" \
            --out "$dir/connect" >/dev/null 2>&1
    }
    # A worker hands its lines to the log a batch a second.
    logins_logged() {
        sleep 2
        grep -c "logged in" "$dir/torpor.log"
    }
    connect_for 1s
    before=$(logins_logged)
    counted connect_for 3s
    logins=$(($(logins_logged) - before))
    report login "$logins" logins login
else
    echo "login: not measured (no $bench, or TLS=1)"
fi
