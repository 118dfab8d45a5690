#!/usr/bin/env bash
# Throwaway PostgreSQL on loopback for tests (developers and CI).
#
#   scripts/pg.sh start [DIR]   init + start a server; prints ONE line on stdout:
#                                 postgresql://postgres@127.0.0.1:PORT/omium_test
#   scripts/pg.sh stop  [DIR]   stop it (immediate) and delete DIR
#
# DIR defaults to a fresh mktemp dir under /tmp on start, and to the path
# recorded in /tmp/omium-pg.dir on stop. Auth is "trust" and the server
# listens on 127.0.0.1 only; durability is switched off: never use for data.
# If the server binaries are missing and we are root, `apt-get install
# postgresql` is run. Root cannot run initdb/postgres, so as root the server
# runs as the OS user `postgres`. All diagnostics go to stderr.
set -euo pipefail

# Keep stdout clean: only the URL goes to the original stdout (fd 3).
exec 3>&1 1>&2

STATE_FILE=/tmp/omium-pg.dir
DB_NAME=omium_test
SUPERUSER=postgres

# Client/server env vars could redirect our own pg_ctl/psql calls elsewhere.
unset PGDATA PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS || true

die() { echo "pg.sh: error: $*"; exit 1; }
log() { echo "pg.sh: $*"; }

usage() {
    echo "usage: $0 start [DIR] | stop [DIR]"
    exit 2
}

# Directory holding postgres, initdb and pg_ctl (PATH first, then the newest
# /usr/lib/postgresql/*/bin). Prints nothing if none is found.
find_bindir() {
    local cand p
    local -a cands=()
    if p=$(command -v pg_ctl 2>/dev/null); then
        cands+=("$(dirname "$(readlink -f "$p")")")
    fi
    while IFS= read -r cand; do
        [[ -n $cand ]] && cands+=("$cand")
    done < <(for p in /usr/lib/postgresql/*/bin; do
                 if [[ -d $p ]]; then echo "$p"; fi
             done | sort -V -r)
    for cand in ${cands[@]+"${cands[@]}"}; do
        if [[ -x $cand/postgres && -x $cand/initdb && -x $cand/pg_ctl ]]; then
            echo "$cand"
            return 0
        fi
    done
    # All three on PATH but in different directories (e.g. separate symlinks).
    if command -v postgres >/dev/null && command -v initdb >/dev/null \
        && command -v pg_ctl >/dev/null; then
        dirname "$(command -v pg_ctl)"
    fi
}

ensure_bindir() {
    BINDIR=$(find_bindir)
    if [[ -z $BINDIR ]]; then
        if [[ $(id -u) -ne 0 ]]; then
            die "PostgreSQL server binaries (postgres, initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; install them (e.g. 'sudo apt-get install postgresql') or run as root to have this script install them"
        fi
        log "PostgreSQL not found; installing it with apt-get (one-time)..."
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
        BINDIR=$(find_bindir)
        [[ -n $BINDIR ]] || die "installed 'postgresql' but still cannot find postgres/initdb/pg_ctl"
    fi
}

# Path of a PostgreSQL program: prefer BINDIR, then PATH.
pgbin() {
    if [[ -x $BINDIR/$1 ]]; then
        echo "$BINDIR/$1"
    elif command -v "$1" >/dev/null; then
        command -v "$1"
    else
        die "cannot find PostgreSQL program '$1'"
    fi
}

# Run a command as RUN_AS (the data dir owner) when we are root, else as self.
# cd / first: as another user the caller's cwd (e.g. /root) may be unreadable.
# 3>&- : the daemonized server must not inherit our real stdout, or a caller
# doing URL=$(pg.sh start) would wait forever for the pipe to close.
as_owner() {
    if [[ $(id -u) -eq 0 && $RUN_AS != root ]]; then
        if command -v runuser >/dev/null; then
            (cd / && runuser -u "$RUN_AS" -- "$@") 3>&-
        else
            (cd / && su "$RUN_AS" -s /bin/bash -c "$(printf '%q ' "$@")") 3>&-
        fi
    else
        "$@" 3>&-
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

cmd_start() {
    local dir=${1:-} created_dir=0 port url attempt started=0
    ensure_bindir
    log "using PostgreSQL binaries in $BINDIR"

    if [[ $(id -u) -eq 0 ]]; then
        RUN_AS=postgres
        if ! id -u "$RUN_AS" >/dev/null 2>&1; then
            log "creating system user '$RUN_AS'"
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /bin/bash "$RUN_AS" || die "cannot create user '$RUN_AS'"
        fi
    else
        RUN_AS=$(id -un)
    fi

    if [[ -z $dir ]]; then
        dir=$(mktemp -d /tmp/omium-pg.XXXXXX)
        created_dir=1
    else
        if [[ -e $dir && ! -d $dir ]]; then die "$dir exists and is not a directory"; fi
        if [[ -d $dir && -n $(ls -A "$dir") ]]; then die "$dir is not empty"; fi
        if [[ ! -d $dir ]]; then created_dir=1; fi
        mkdir -p "$dir"
        dir=$(cd "$dir" && pwd -P)
    fi
    # DIR is spliced into pg_ctl's -o option string, which is word-split.
    if [[ $dir =~ [[:space:]] ]]; then die "DIR must not contain whitespace: $dir"; fi
    # Unix sockets are limited to ~107 bytes of path ("DIR/.s.PGSQL.PORT").
    if (( ${#dir} > 80 )); then
        die "DIR path too long for a unix socket directory (${#dir} chars): $dir"
    fi
    if [[ $(id -u) -eq 0 ]]; then
        chown "$RUN_AS:" "$dir"
    fi
    chmod 700 "$dir"   # initdb insists on 0700 (or 0750)

    # On failure, leave nothing behind.
    cleanup_failed_start() {
        if (( started )); then
            as_owner "$(pgbin pg_ctl)" -D "$dir" -m immediate stop >/dev/null 2>&1 || true
        fi
        if (( created_dir )); then rm -rf "$dir"; else rm -rf "${dir:?}"/* "${dir:?}"/.[!.]* 2>/dev/null || true; fi
    }
    trap 'rc=$?; if (( rc != 0 )); then cleanup_failed_start; fi' EXIT

    log "initdb into $dir"
    local out
    out=$(as_owner "$(pgbin initdb)" -D "$dir" -A trust --no-sync -U "$SUPERUSER" \
        -E UTF8 --locale=C 2>&1) || { echo "$out"; die "initdb failed"; }

    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        log "starting server on 127.0.0.1:$port (attempt $attempt)"
        if as_owner "$(pgbin pg_ctl)" -D "$dir" -l "$dir/log" -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" -w start >/dev/null; then
            started=1
            break
        fi
        # Port grabbed between picking and binding? Try another one.
        if grep -q "Address already in use" "$dir/log" 2>/dev/null; then
            : >"$dir/log" 2>/dev/null || true
            continue
        fi
        tail -n 30 "$dir/log" || true
        die "pg_ctl start failed (log above, from $dir/log)"
    done
    (( started )) || { tail -n 30 "$dir/log" || true; die "could not find a free port"; }

    "$(pgbin psql)" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$SUPERUSER" \
        -d postgres -c "CREATE DATABASE $DB_NAME" >/dev/null \
        || die "could not create database $DB_NAME"

    echo "$dir" >"$STATE_FILE"
    url="postgresql://$SUPERUSER@127.0.0.1:$port/$DB_NAME"
    log "ready: $url (data dir $dir; stop with: $0 stop $dir)"
    trap - EXIT
    echo "$url" >&3
}

cmd_stop() {
    local dir=${1:-}
    if [[ -z $dir ]]; then
        [[ -f $STATE_FILE ]] || die "no DIR given and no $STATE_FILE; nothing to stop"
        dir=$(<"$STATE_FILE")
        [[ -n $dir ]] || die "$STATE_FILE is empty"
    fi
    if [[ ! -d $dir ]]; then
        log "$dir does not exist; nothing to stop"
    else
        dir=$(cd "$dir" && pwd -P)
        # Refuse to delete something that is not (or was not meant to be) a data dir.
        if [[ ! -f $dir/PG_VERSION && -n $(ls -A "$dir") ]]; then
            die "$dir does not look like a PostgreSQL data dir; not touching it"
        fi
        if [[ -f $dir/postmaster.pid ]]; then
            ensure_bindir
            RUN_AS=$(stat -c %U "$dir")
            log "stopping server in $dir"
            as_owner "$(pgbin pg_ctl)" -D "$dir" -m immediate -w stop >/dev/null \
                || log "warning: pg_ctl stop failed (server already gone?)"
        fi
        rm -rf "$dir"
        log "removed $dir"
    fi
    if [[ -f $STATE_FILE && $(<"$STATE_FILE") == "$dir" ]]; then
        rm -f "$STATE_FILE"
    fi
}

case ${1:-} in
    start) shift; (( $# <= 1 )) || usage; cmd_start "$@" ;;
    stop) shift; (( $# <= 1 )) || usage; cmd_stop "$@" ;;
    *) usage ;;
esac
