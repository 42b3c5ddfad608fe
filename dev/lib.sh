# shellcheck shell=bash
# Helpers shared by dev/up and dev/test. Source it, do not run it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing registers stride_cleanup on EXIT/INT/TERM, so any server this
# script starts is stopped again when the script ends. Servers that were
# already running are never touched.
#
# Knobs (all optional):
#   STRIDE_DATABASE_URL / STRIDE_REDIS_URL / STRIDE_NATS_URL /
#   STRIDE_INFLUX_URL         where the servers are
#   STRIDE_NATS_MONITOR_PORT  NATS monitoring port (default 8222)
#   STRIDE_INFLUX_RPC_PORT    RPC (backup/restore) port of an InfluxDB we start
#                             (default 8088, or a free port near it if taken)
#   STRIDE_KEEP_SERVICES=1    leave servers we started running at exit
set -euo pipefail

STRIDE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRIDE_STATE="$STRIDE_ROOT/.dev/state"

STRIDE_DEFAULT_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"
STRIDE_DEFAULT_REDIS_URL="redis://127.0.0.1:6379"
STRIDE_DEFAULT_NATS_URL="nats://127.0.0.1:4222"
STRIDE_DEFAULT_INFLUX_URL="http://127.0.0.1:8086"
STRIDE_MIN_RUST="1.88"

# What this script started; stride_cleanup stops exactly these.
STRIDE_STARTED_PG=""      # "<version> <cluster>" of a PostgreSQL cluster we started
STRIDE_STARTED_REDIS=""   # pid file of a redis-server we started
STRIDE_STARTED_NATS=""    # pid of a nats-server we started
STRIDE_STARTED_INFLUX=""  # pid of an influxd we started
STRIDE_IDLE_CGROUP=""     # the idle CPU cgroup it runs in, when there is one
STRIDE_MADE_BACKGROUND_CGROUP=""  # the idle CPU cgroup made for stride's background threads
STRIDE_CLEANED_UP=""
STRIDE_APT_UPDATED=""

stride_log() { printf 'stride: %s\n' "$*" >&2; }
stride_die() { printf 'stride: error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly, or through sudo when we are not root.
stride_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        stride_die "need root for: $* (not root and sudo is not installed)"
    fi
}

# Run a command as the postgres OS user (peer auth on the local socket).
stride_as_postgres() {
    # cd / so psql does not warn that it cannot read our working directory.
    if [ "$(id -u)" -eq 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u postgres -- "$@")
        else
            (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
        fi
    elif command -v sudo >/dev/null 2>&1; then
        (cd / && sudo -u postgres "$@")
    else
        stride_die "need to run as the postgres user: $* (not root and sudo is not installed)"
    fi
}

# ---------------------------------------------------------------------------
# Packages

stride_apt_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

# stride_need_apt PKG... : install whichever of the packages are missing.
stride_need_apt() {
    local pkg missing=()
    for pkg in "$@"; do
        stride_apt_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0

    command -v apt-get >/dev/null 2>&1 ||
        stride_die "missing packages: ${missing[*]} (no apt-get here; install them by hand)"
    stride_log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$STRIDE_APT_UPDATED" ]; then
        stride_as_root apt-get -o DPkg::Lock::Timeout=300 update -q ||
            stride_die "apt-get update failed"
        STRIDE_APT_UPDATED=1
    fi
    stride_as_root apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" ||
        stride_die "apt-get install failed for: ${missing[*]}"
}

# ---------------------------------------------------------------------------
# Ports and URLs

# stride_port_open HOST PORT : true if something accepts TCP connections there.
stride_port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# stride_wait_port HOST PORT SECONDS NAME [PID] : wait until the port answers.
# With PID, give up early if that process has died.
stride_wait_port() {
    local host=$1 port=$2 secs=$3 name=$4 pid=${5:-} i
    for ((i = 0; i < secs * 4; i++)); do
        stride_port_open "$host" "$port" && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            stride_log "$name exited before listening on $host:$port"
            return 1
        fi
        sleep 0.25
    done
    stride_log "$name did not listen on $host:$port within ${secs}s"
    return 1
}

# stride_url_hostport URL DEFAULT_PORT : prints "HOST PORT" of
# scheme://[user[:pass]@]host[:port][/...]. Bracketed IPv6 hosts are kept as is.
stride_url_hostport() {
    local rest=${1#*://} default_port=$2 host port
    rest=${rest%%[/?]*}   # drop path and query
    rest=${rest##*@}      # drop credentials
    if [[ $rest =~ ^(\[[^]]*\]|[^:]*)(:([0-9]+))?$ ]]; then
        host=${BASH_REMATCH[1]}
        port=${BASH_REMATCH[3]:-$default_port}
    else
        host=$rest
        port=$default_port
    fi
    printf '%s %s\n' "${host:-127.0.0.1}" "$port"
}

# Only servers on this machine's loopback can be started by us.
stride_is_local() {
    case "$1" in
        127.0.0.1 | localhost | '[::1]') return 0 ;;
        *) return 1 ;;
    esac
}

stride_state_dir() {
    mkdir -p "$STRIDE_STATE/$1"
    # Keep runtime files out of git without touching the repository's own
    # ignore rules.
    [ -f "$STRIDE_ROOT/.dev/.gitignore" ] || printf '*\n' >"$STRIDE_ROOT/.dev/.gitignore"
}

# ---------------------------------------------------------------------------
# PostgreSQL

stride_pg_url_ok() {
    PGCONNECT_TIMEOUT=5 psql "$1" -XAtq -c 'select 1' >/dev/null 2>&1
}

# stride_ensure_postgres [URL] : URL defaults to STRIDE_DATABASE_URL.
stride_ensure_postgres() {
    local url=${1:-${STRIDE_DATABASE_URL:-$STRIDE_DEFAULT_DATABASE_URL}}
    local host port ver cluster line i
    read -r host port < <(stride_url_hostport "$url" 5432)

    if ! stride_port_open "$host" "$port"; then
        stride_is_local "$host" ||
            stride_die "PostgreSQL at $host:$port does not answer (not local, so not starting one)"
        stride_need_apt postgresql

        # The package install may already have started it.
        if ! stride_port_open "$host" "$port"; then
            # Start the Debian cluster configured for this port, creating
            # "main" if the machine has none at all.
            line=$(pg_lsclusters --no-header 2>/dev/null | awk -v p="$port" '$3 == p { print $1, $2; exit }')
            if [ -z "$line" ]; then
                if [ -n "$(ls -A /etc/postgresql 2>/dev/null)" ]; then
                    stride_die "no PostgreSQL cluster is configured for port $port (see pg_lsclusters)"
                fi
                ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
                stride_log "creating PostgreSQL $ver cluster main on port $port"
                stride_as_root pg_createcluster --port "$port" "$ver" main >/dev/null
                line="$ver main"
            fi
            read -r ver cluster <<<"$line"
            stride_log "starting PostgreSQL $ver/$cluster on port $port"
            # --skip-systemctl-redirect: work on machines without systemd too.
            stride_as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start ||
                stride_die "could not start PostgreSQL $ver/$cluster (see /var/log/postgresql/)"
            STRIDE_STARTED_PG="$ver $cluster"
            stride_wait_port "$host" "$port" 30 PostgreSQL ||
                stride_die "PostgreSQL did not come up (see /var/log/postgresql/)"
        fi
    fi

    command -v psql >/dev/null 2>&1 || stride_need_apt postgresql-client

    # A server that just opened its port may still be starting up.
    for ((i = 0; i < 10; i++)); do
        stride_pg_url_ok "$url" && return 0
        sleep 0.5
    done

    # A fresh Debian install asks for a password on TCP, and the postgres role
    # has none. Give it the password the default URL uses. This is a
    # development default for a server that listens on loopback only; never
    # do this on a shared or reachable server.
    if stride_is_local "$host" && [[ $url == postgres*://postgres:postgres@* ]]; then
        stride_log "setting the password of role postgres (development default, loopback only)"
        stride_as_postgres psql -X -q -p "$port" -c "ALTER ROLE postgres PASSWORD 'postgres'" ||
            stride_die "could not set the postgres role password through the local socket"
        stride_pg_url_ok "$url" && return 0
    fi
    stride_die "cannot connect to PostgreSQL with $url: $(PGCONNECT_TIMEOUT=5 psql "$url" -XAtq -c 'select 1' 2>&1 | head -n 3)"
}

# ---------------------------------------------------------------------------
# Redis

# stride_ensure_redis [URL] : URL defaults to STRIDE_REDIS_URL.
stride_ensure_redis() {
    local url=${1:-${STRIDE_REDIS_URL:-$STRIDE_DEFAULT_REDIS_URL}}
    local host port bind pidfile
    read -r host port < <(stride_url_hostport "$url" 6379)
    stride_port_open "$host" "$port" && return 0

    stride_is_local "$host" ||
        stride_die "Redis at $host:$port does not answer (not local, so not starting one)"
    stride_need_apt redis-server
    stride_port_open "$host" "$port" && return 0   # the package install started it

    stride_state_dir redis
    bind=127.0.0.1
    [ "$host" = '[::1]' ] && bind=::1
    pidfile="$STRIDE_STATE/redis-$port.pid"
    rm -f "$pidfile"
    stride_log "starting redis-server on $bind:$port (log: $STRIDE_STATE/redis.log)"
    # No persistence: this is a throwaway development/test instance.
    redis-server --daemonize yes --bind "$bind" --port "$port" \
        --save "" --appendonly no \
        --dir "$STRIDE_STATE/redis" --logfile "$STRIDE_STATE/redis.log" \
        --pidfile "$pidfile" ||
        stride_die "redis-server failed to start (see $STRIDE_STATE/redis.log)"
    STRIDE_STARTED_REDIS=$pidfile
    stride_wait_port "$host" "$port" 15 redis-server ||
        stride_die "redis-server did not come up (see $STRIDE_STATE/redis.log)"
}

# ---------------------------------------------------------------------------
# NATS

# stride_ensure_nats [URL] : URL defaults to STRIDE_NATS_URL. The server must
# have JetStream enabled.
stride_ensure_nats() {
    local url=${1:-${STRIDE_NATS_URL:-$STRIDE_DEFAULT_NATS_URL}}
    local mport=${STRIDE_NATS_MONITOR_PORT:-8222}
    local host port addr pid varz

    read -r host port < <(stride_url_hostport "$url" 4222)
    if stride_port_open "$host" "$port"; then
        # JetStream can only be checked through the monitoring port, and only
        # if that port belongs to this same server. Otherwise carry on: the
        # binary reports a clear error when JetStream is off.
        if stride_port_open "$host" "$mport" && command -v curl >/dev/null 2>&1 &&
            varz=$(curl -fsS -m 3 "http://$host:$mport/varz" 2>/dev/null) &&
            grep -Eq "\"port\":[[:space:]]*$port," <<<"$varz"; then
            if curl -fsS -m 3 "http://$host:$mport/jsz" 2>/dev/null |
                grep -Eq '"disabled":[[:space:]]*true'; then
                stride_die "NATS at $host:$port runs without JetStream; restart it with -js"
            fi
        fi
        return 0
    fi

    stride_is_local "$host" ||
        stride_die "NATS at $host:$port does not answer (not local, so not starting one)"
    stride_need_apt nats-server
    if stride_port_open "$host" "$port"; then
        # The package install started a server; the next call checks it.
        stride_ensure_nats "$url"
        return 0
    fi

    stride_state_dir nats
    addr=127.0.0.1
    [ "$host" = '[::1]' ] && addr=::1
    stride_log "starting nats-server with JetStream on $addr:$port (log: $STRIDE_STATE/nats.log)"
    # setsid: keep it out of the terminal's process group, so Ctrl-C reaches
    # only this script, which then stops the server itself in stride_cleanup.
    setsid nats-server -a "$addr" -p "$port" -js -sd "$STRIDE_STATE/nats" -m "$mport" \
        >>"$STRIDE_STATE/nats.log" 2>&1 </dev/null &
    pid=$!
    STRIDE_STARTED_NATS=$pid
    if ! stride_wait_port "$host" "$port" 15 nats-server "$pid"; then
        tail -n 5 "$STRIDE_STATE/nats.log" >&2 || true
        stride_die "nats-server did not come up (see $STRIDE_STATE/nats.log)"
    fi
}

# ---------------------------------------------------------------------------
# InfluxDB 1.x

# stride_influx_ping URL : prints the HTTP status of GET URL/ping (000 if
# nothing answers). InfluxDB 1.x answers 204.
stride_influx_ping() {
    curl -s -o /dev/null -m 3 -w '%{http_code}' "${1%/}/ping" 2>/dev/null || true
}

# stride_influx_wait URL SECONDS [PID] : wait until URL/ping answers 204.
# With PID, give up early if that process has died.
stride_influx_wait() {
    local url=$1 secs=$2 pid=${3:-} i
    for ((i = 0; i < secs * 4; i++)); do
        [ "$(stride_influx_ping "$url")" = 204 ] && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            stride_log "influxd exited before answering on $url/ping"
            return 1
        fi
        sleep 0.25
    done
    stride_log "influxd did not answer 204 on $url/ping within ${secs}s"
    return 1
}

# TOML basic string: escape backslashes and double quotes.
stride_toml_str() {
    local s=${1//\\/\\\\}
    printf '"%s"' "${s//\"/\\\"}"
}

# stride_ensure_influxdb [URL] : URL defaults to STRIDE_INFLUX_URL. Starts
# influxd (InfluxDB 1.x) with a project-owned config when nothing answers
# on a loopback URL.
stride_ensure_influxdb() {
    local url=${1:-${STRIDE_INFLUX_URL:-$STRIDE_DEFAULT_INFLUX_URL}}
    local host port addr code rpc pid pidfile conf log dir i
    url=${url%/}
    command -v curl >/dev/null 2>&1 || stride_need_apt curl

    code=$(stride_influx_ping "$url")
    [ "$code" = 204 ] && return 0

    read -r host port < <(stride_url_hostport "$url" 8086)
    if stride_port_open "$host" "$port"; then
        # Something listens there. Give a server that is just opening a
        # moment, but do not start a second one on the same port.
        stride_influx_wait "$url" 5 2>/dev/null && return 0
        stride_die "$host:$port is in use but GET $url/ping does not answer 204 (got $(stride_influx_ping "$url")); is it InfluxDB 1.x?"
    fi

    stride_is_local "$host" ||
        stride_die "InfluxDB at $url does not answer (not local, so not starting one)"
    # The Debian package's postinst may try to start its own service; that
    # may fail or not happen at all (no systemd), which is fine: we run our
    # own influxd below unless the package's one ended up on our port.
    command -v influxd >/dev/null 2>&1 || stride_need_apt influxdb
    command -v influxd >/dev/null 2>&1 ||
        stride_die "influxd not found after installing the influxdb package"
    if stride_port_open "$host" "$port"; then
        stride_influx_wait "$url" 60 ||
            stride_die "the influxdb package started a server on $host:$port that does not answer $url/ping"
        return 0
    fi

    stride_state_dir influxdb
    dir="$STRIDE_STATE/influxdb"
    conf="$STRIDE_STATE/influxdb.conf"
    log="$STRIDE_STATE/influxdb.log"
    pidfile="$STRIDE_STATE/influxdb.pid"

    # One data directory: refuse to run a second influxd on it (for
    # example dev/up and dev/test on different ports at the same time).
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
            [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = influxd ]; then
            stride_die "another influxd (pid $pid) already uses $dir; stop it or point the URL at it"
        fi
    fi

    addr=127.0.0.1
    [ "$host" = '[::1]' ] && addr='[::1]'

    # RPC (backup/restore) port: STRIDE_INFLUX_RPC_PORT as given, else 8088,
    # else the first free port after it.
    if [ -n "${STRIDE_INFLUX_RPC_PORT:-}" ]; then
        rpc=$STRIDE_INFLUX_RPC_PORT
        [[ $rpc =~ ^[0-9]+$ ]] || stride_die "STRIDE_INFLUX_RPC_PORT must be a port number, not '$rpc'"
        [ "$rpc" != "$port" ] || stride_die "STRIDE_INFLUX_RPC_PORT ($rpc) is the HTTP port of $url"
        stride_port_open 127.0.0.1 "$rpc" &&
            stride_die "STRIDE_INFLUX_RPC_PORT $rpc is already in use on 127.0.0.1"
    else
        rpc=""
        for ((i = 8088; i < 8188; i++)); do
            [ "$i" != "$port" ] || continue
            stride_port_open 127.0.0.1 "$i" || { rpc=$i; break; }
        done
        [ -n "$rpc" ] || stride_die "no free InfluxDB RPC port in 8088-8187; set STRIDE_INFLUX_RPC_PORT"
    fi

    # Rewritten on every start so it always matches this script.
    cat >"$conf" <<EOF
# Written by dev/lib.sh (stride_ensure_influxdb) on every start; edits are lost.
reporting-enabled = false
bind-address = $(stride_toml_str "127.0.0.1:$rpc")

[meta]
  dir = $(stride_toml_str "$dir/meta")

[data]
  dir = $(stride_toml_str "$dir/data")
  wal-dir = $(stride_toml_str "$dir/wal")
  index-version = "tsi1"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = $(stride_toml_str "$addr:$port")
  log-enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
EOF

    stride_log "starting influxd on $addr:$port, RPC 127.0.0.1:$rpc (config: $conf, log: $log)"
    # setsid as for nats-server. INFLUXDB_* variables would override the
    # config file, so the server does not inherit them.
    # On one machine with everything else, InfluxDB runs at a lower CPU priority
    # (STRIDE_INFLUX_NICE, default 10): when ingest and storage compete for the
    # cores, requests are answered first and the backlog waits in JetStream,
    # which is what the buffer is for. 0 gives it the same priority as the rest.
    local nice=${STRIDE_INFLUX_NICE:-10}
    [[ $nice =~ ^[0-9]+$ ]] && [ "$nice" -le 19 ] ||
        stride_die "STRIDE_INFLUX_NICE must be 0 to 19, not '$nice'"
    (
        while read -r v; do unset "$v"; done < <(compgen -e | grep '^INFLUXDB_' || true)
        exec setsid nice -n "$nice" influxd -config "$conf" >>"$log" 2>&1 </dev/null
    ) &
    pid=$!
    STRIDE_STARTED_INFLUX=$pid
    printf '%s\n' "$pid" >"$pidfile"
    if ! stride_influx_wait "$url" 60 "$pid"; then
        tail -n 5 "$log" >&2 || true
        stride_die "influxd did not come up (see $log)"
    fi
    # With autogroup scheduling (the kernel's default on desktops and many servers), setsid
    # put influxd in a scheduling group of its own, and a group competes with the others
    # at the group's nice value, not its threads'. Give the group the same nice value.
    if [ -w "/proc/$pid/autogroup" ]; then
        echo "$nice" >"/proc/$pid/autogroup" 2>/dev/null ||
            stride_log "could not set the scheduling group of influxd to nice $nice"
    fi
    # Stronger where the kernel allows it (STRIDE_INFLUX_CPU_IDLE, default 1): an idle CPU
    # group. Its threads run when nothing else wants the CPU, and a request that wakes up
    # takes the CPU from them at once instead of waiting for their time slice to end.
    case ${STRIDE_INFLUX_CPU_IDLE:-1} in
    0) ;;
    1)
        if stride_cpu_idle_cgroup "$pid" stride-influxdb; then
            stride_log "influxd runs in the idle CPU group $STRIDE_IDLE_CGROUP"
        else
            stride_log "no idle CPU group available (needs write access to a cgroup with cpu.idle); influxd runs at nice $nice only"
        fi
        ;;
    *) stride_die "STRIDE_INFLUX_CPU_IDLE must be 0 or 1, not '${STRIDE_INFLUX_CPU_IDLE}'" ;;
    esac
}

# Moves process PID into the CPU cgroup NAME with cpu.idle = 1 (Linux 5.15 and later; cgroup
# v1's cpu hierarchy or cgroup v2 with the cpu controller), creating it when missing, and
# sets STRIDE_IDLE_CGROUP to its folder. Fails quietly where cgroups cannot be written.
stride_cpu_idle_cgroup() {
    local pid=$1 name=$2 root dir
    for root in /sys/fs/cgroup/cpu /sys/fs/cgroup/cpu,cpuacct /sys/fs/cgroup; do
        [ -f "$root/cpu.idle" ] || [ -f "$root/cgroup.subtree_control" ] || continue
        if [ -f "$root/cgroup.subtree_control" ] &&
            ! grep -qw cpu "$root/cgroup.subtree_control" 2>/dev/null; then
            continue
        fi
        dir=$root/$name
        if stride_make_idle_cgroup "$dir" && echo "$pid" >"$dir/cgroup.procs" 2>/dev/null; then
            STRIDE_IDLE_CGROUP=$dir
            return 0
        fi
    done
    return 1
}

# Creates the CPU cgroup folder DIR when missing and sets its cpu.idle to 1; fails quietly
# where that cannot be done.
stride_make_idle_cgroup() {
    { mkdir -p "$1" && [ -f "$1/cpu.idle" ] && echo 1 >"$1/cpu.idle"; } 2>/dev/null
}

# Makes an idle CPU cgroup for stride's background threads (the telemetry writer) and
# exports STRIDE_BACKGROUND_CGROUP for the `stride serve` started next, unless it is set
# already or STRIDE_BACKGROUND_CPU_IDLE=0. Threads join it one by one, which only cgroup v1's
# `cpu` hierarchy allows of an ordinary process; elsewhere the writer stays at SCHED_IDLE in
# the server's own group. Removed at exit once the server is gone.
stride_background_cgroup() {
    [ -n "${STRIDE_BACKGROUND_CGROUP:-}" ] && return 0
    case ${STRIDE_BACKGROUND_CPU_IDLE:-1} in
    0) return 0 ;;
    1) ;;
    *) stride_die "STRIDE_BACKGROUND_CPU_IDLE must be 0 or 1, not '${STRIDE_BACKGROUND_CPU_IDLE}'" ;;
    esac
    local root dir
    for root in /sys/fs/cgroup/cpu /sys/fs/cgroup/cpu,cpuacct; do
        [ -f "$root/cpu.idle" ] || continue
        dir=$root/stride-background
        if stride_make_idle_cgroup "$dir"; then
            export STRIDE_BACKGROUND_CGROUP=$dir
            STRIDE_MADE_BACKGROUND_CGROUP=$dir
            stride_log "background threads run in the idle CPU group $dir"
            return 0
        fi
    done
    stride_log "no idle CPU group for background threads (needs cgroup v1 cpu.idle and write access); they run at SCHED_IDLE only"
}

# ---------------------------------------------------------------------------
# Toolchain

stride_find_cargo() {
    # rustup installs into ~/.cargo/bin, which a non-login shell (CI) may
    # not have on PATH.
    if ! command -v cargo >/dev/null 2>&1; then
        local bin=${CARGO_HOME:-$HOME/.cargo}/bin
        [ -x "$bin/cargo" ] && export PATH="$bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1
}

stride_ensure_build_deps() {
    local pkgs=(protobuf-compiler build-essential pkg-config curl ca-certificates)
    # psql may come from a versioned client package; only ask for the
    # postgresql-client metapackage when psql is really absent.
    command -v psql >/dev/null 2>&1 || pkgs+=(postgresql-client)
    stride_need_apt "${pkgs[@]}"

    local rust_msg="a Rust toolchain is required: install rustup and the stable toolchain (>= $STRIDE_MIN_RUST); the Debian rustc package is too old"
    stride_find_cargo || stride_die "cargo not found; $rust_msg"

    local ver
    ver=$(cargo --version 2>/dev/null || true)
    if [[ $ver =~ ^cargo\ ([0-9]+)\.([0-9]+) ]]; then
        local major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
        local want_major=${STRIDE_MIN_RUST%%.*} want_minor=${STRIDE_MIN_RUST#*.}
        if ((major < want_major || (major == want_major && minor < want_minor))); then
            stride_die "found ${ver%% (*}, too old; $rust_msg"
        fi
    else
        stride_die "cannot read the cargo version ('$ver'); $rust_msg"
    fi
}

stride_ensure_nextest() {
    cargo nextest --version >/dev/null 2>&1 && return 0
    stride_log "installing cargo-nextest (cargo install, takes a few minutes)"
    cargo install cargo-nextest --locked || stride_die "cargo install cargo-nextest failed"
}

# ---------------------------------------------------------------------------
# Cleanup

stride_stop_pid() {
    local pid=$1 name=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    stride_log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 40; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.25
    done
    stride_log "$name did not stop in 10s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

# Stops only the servers this script started. Safe to call more than once.
stride_cleanup() {
    [ -n "$STRIDE_CLEANED_UP" ] && return 0
    STRIDE_CLEANED_UP=1
    # Removed once empty: it fails while a server of ours still has a thread in it.
    [ -n "$STRIDE_MADE_BACKGROUND_CGROUP" ] &&
        { rmdir "$STRIDE_MADE_BACKGROUND_CGROUP" 2>/dev/null || true; }
    if [ "${STRIDE_KEEP_SERVICES:-}" = 1 ]; then
        [ -n "$STRIDE_STARTED_INFLUX$STRIDE_STARTED_NATS$STRIDE_STARTED_REDIS$STRIDE_STARTED_PG" ] &&
            stride_log "STRIDE_KEEP_SERVICES=1: leaving the servers we started running"
        return 0
    fi
    if [ -n "$STRIDE_STARTED_INFLUX" ]; then
        stride_stop_pid "$STRIDE_STARTED_INFLUX" influxd
        wait "$STRIDE_STARTED_INFLUX" 2>/dev/null || true
        rm -f "$STRIDE_STATE/influxdb.pid"
        # Removed once empty (another influxd of ours may still be in it).
        [ -n "$STRIDE_IDLE_CGROUP" ] && { rmdir "$STRIDE_IDLE_CGROUP" 2>/dev/null || true; }
    fi
    if [ -n "$STRIDE_STARTED_NATS" ]; then
        stride_stop_pid "$STRIDE_STARTED_NATS" nats-server
        wait "$STRIDE_STARTED_NATS" 2>/dev/null || true
    fi
    if [ -n "$STRIDE_STARTED_REDIS" ] && [ -f "$STRIDE_STARTED_REDIS" ]; then
        stride_stop_pid "$(cat "$STRIDE_STARTED_REDIS")" redis-server
    fi
    if [ -n "$STRIDE_STARTED_PG" ]; then
        local ver cluster
        read -r ver cluster <<<"$STRIDE_STARTED_PG"
        stride_log "stopping PostgreSQL $ver/$cluster"
        stride_as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" stop || true
    fi
    return 0
}

trap 'stride_cleanup' EXIT
trap 'stride_cleanup; exit 130' INT
trap 'stride_cleanup; exit 143' TERM
