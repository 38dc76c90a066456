#!/usr/bin/env bash
# A local pg_auto_failover formation on this machine: a monitor, a primary and a synchronous
# secondary (Debian's postgresql-15-auto-failover), each a pg_autoctl service on 127.0.0.1.
#
#   ops/ha/formation.sh start DIR [BASE_PORT]  monitor on BASE_PORT (default 6540), nodes on +1, +2;
#                                             prints the application's multi-host DATABASE_URL
#   ops/ha/formation.sh uri DIR                that URL again (pg_autoctl show uri)
#   ops/ha/formation.sh state DIR              pg_autoctl show state
#   ops/ha/formation.sh primary DIR            the name of the node that is primary now
#   ops/ha/formation.sh crash DIR NODE         kill -9 a node's pg_autoctl and its Postgres: a host lost
#   ops/ha/formation.sh run DIR NODE           start a node's service again (a crashed primary rejoins
#                                             as the secondary, rewound by pg_rewind)
#   ops/ha/formation.sh stop DIR               stop the three services
#   ops/ha/formation.sh dirs DIR               only make the nodes' pg_autoctl state directories (as start does)
#
# HA_LISTEN: the data nodes' listen_addresses (default 127.0.0.1; e.g. "127.0.0.1,10.231.0.1" to be
# reached from network namespaces too); HA_CLIENTS: a CIDR whose clients may connect (trust, as the
# formation's own 127.0.0.1 rules are), added to each node's pg_hba.conf.
#
# Run as root (it installs the package and makes the system user pg_autoctl runs as: Postgres
# and pg_autoctl refuse to run as root) or as an ordinary user with the package installed.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
HA_USER=${HA_USER:-bankha}
DB=${HA_DATABASE:-bank}
cmd=${1:?usage: formation.sh start|uri|state|stop DIR [BASE_PORT]}
dir=$(realpath -m "${2:?usage: formation.sh start|uri|state|stop DIR [BASE_PORT]}")
base=${3:-6540}
listen=${HA_LISTEN:-127.0.0.1}

as_ha() {
  # Every pg_autoctl call as the formation's user, with the PostgreSQL 15 binaries first in PATH.
  local env=(env "PATH=$PG_BIN:$PATH" "XDG_RUNTIME_DIR=$dir/run" "XDG_CONFIG_HOME=$dir/config" "XDG_DATA_HOME=$dir/data")
  if [ "$(id -u)" = 0 ]; then runuser -u "$HA_USER" -- "${env[@]}" "$@"; else "${env[@]}" "$@"; fi
}

install() {
  if ! command -v pg_autoctl >/dev/null || [ ! -x "$PG_BIN/pg_ctl" ]; then
    [ "$(id -u)" = 0 ] || { echo "install postgresql-15-auto-failover (as root)" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15-auto-failover >/dev/null
  fi
  if [ "$(id -u)" = 0 ] && ! id "$HA_USER" >/dev/null 2>&1; then
    # In group postgres: Debian's Postgres puts its sockets in /var/run/postgresql, that group's.
    useradd --system --no-create-home --shell /usr/sbin/nologin --groups postgres "$HA_USER"
  fi
  if [ "$(id -u)" = 0 ] && ! id -nG "$HA_USER" | grep -qw postgres; then usermod -aG postgres "$HA_USER"; fi
}

service() {  # name, pg_autoctl create arguments...: create the node and run its service in the background
  local name=$1; shift
  if [ ! -f "$dir/$name/PG_VERSION" ] || [ ! -f "$dir/run/.started-$name" ]; then
    as_ha setsid nohup pg_autoctl create "$@" --pgdata "$dir/$name" --hostname 127.0.0.1 \
      --auth trust --no-ssl --run >"$dir/$name.log" 2>&1 &
    touch "$dir/run/.started-$name"
  else
    as_ha setsid nohup pg_autoctl run --pgdata "$dir/$name" >>"$dir/$name.log" 2>&1 &
  fi
}

autoctl_pid() { cat "$dir/run/pg_autoctl$dir/$1/pg_autoctl.pid" 2>/dev/null | head -1; }

monitor_uri() { echo "postgres://autoctl_node@127.0.0.1:$base/pg_auto_failover?sslmode=disable"; }

wait_for() {  # seconds, description, command...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $what; logs in $dir/*.log" >&2; exit 1; }
    sleep 0.2
  done
}

two_nodes_in_sync() {
  as_ha pg_autoctl show state --pgdata "$dir/monitor" --json \
    | python3 -c 'import json,sys; s=[n["current_group_state"] for n in json.load(sys.stdin)]; sys.exit(sorted(s)!=["primary","secondary"])'
}

state_dirs() {
  # Every directory pg_autoctl keeps a node's files in (XDG config, data and runtime, each under the
  # node's absolute PGDATA path), made once up front. Two pg_autoctl processes that reach a missing
  # one together race in its mkdir -p and the loser fails with "Failed to create state directory
  # ...: File exists" (reproduced with six concurrent `pg_autoctl show state` on a fresh directory;
  # formation start once failed so, when a poll of the monitor met its own creation).
  local xdg name
  for xdg in run config data; do
    for name in monitor node1 node2; do mkdir -p "$dir/$xdg/pg_autoctl$dir/$name"; done
  done
}

case $cmd in
  start)
    install
    if [ -e "$dir/monitor" ]; then
      echo "$dir holds a formation already: stop it and remove the directory first (each run its own)" >&2
      exit 1
    fi
    state_dirs
    [ "$(id -u)" != 0 ] || chown -R "$HA_USER": "$dir"
    service monitor monitor --pgport "$base" --listen 127.0.0.1
    # Polled with psql, not pg_autoctl: nothing else reads the node's files while it creates them.
    wait_for 60 "the monitor" as_ha psql -qX -h 127.0.0.1 -p "$base" -d pg_auto_failover -c 'select 1'
    wait_for 60 "the monitor's state" as_ha pg_autoctl show state --pgdata "$dir/monitor"
    # Fail over within seconds of losing the primary (defaults are 20 s of unhealth and more).
    # primary_demote_timeout: how long the monitor waits for a lost primary to have fenced itself
    # before promoting; it must stay above the keepers' network_partition_timeout (set below).
    for setting in health_check_period=1000 health_check_timeout=1000 health_check_max_retries=1 \
      health_check_retry_delay=500 node_considered_unhealthy_timeout=5000 primary_demote_timeout=10000; do
      as_ha psql -qX -h 127.0.0.1 -p "$base" -d pg_auto_failover \
        -c "ALTER SYSTEM SET pgautofailover.${setting%=*} = ${setting#*=}" >/dev/null
    done
    as_ha psql -qX -h 127.0.0.1 -p "$base" -d pg_auto_failover -c "SELECT pg_reload_conf()" >/dev/null
    service node1 postgres --pgport $((base + 1)) --dbname "$DB" --monitor "$(monitor_uri)" --name node1 \
      --listen "$listen"
    wait_for 120 "the primary" as_ha psql -qX -h 127.0.0.1 -p $((base + 1)) -d "$DB" -c 'select 1'
    # pg_autoctl clones the secondary with pg_basebackup without --checkpoint=fast: its checkpoint is
    # spread over minutes (96 s measured) while the primary's freshly created database is dirty in
    # shared buffers. Written out now, the backup's own checkpoint has next to nothing to write.
    as_ha psql -qX -h 127.0.0.1 -p $((base + 1)) -d "$DB" -c 'CHECKPOINT' >/dev/null
    service node2 postgres --pgport $((base + 2)) --dbname "$DB" --monitor "$(monitor_uri)" --name node2 \
      --listen "$listen"
    wait_for 180 "primary and secondary" two_nodes_in_sync
    for name in node1 node2; do
      if [ -n "${HA_CLIENTS:-}" ] && ! grep -q "^host all all $HA_CLIENTS trust" "$dir/$name/pg_hba.conf"; then
        echo "host all all $HA_CLIENTS trust" >>"$dir/$name/pg_hba.conf"
        port=$((base + ${name#node}))
        as_ha psql -qX -h 127.0.0.1 -p "$port" -d "$DB" -c 'SELECT pg_reload_conf()' >/dev/null
      fi
      # A primary that cannot reach the monitor (nor its standby) for 5 s stops accepting writes
      # (default 20 s), so the monitor may promote after 10 s without two primaries at once.
      as_ha pg_autoctl config set --pgdata "$dir/$name" timeout.network_partition_timeout 5 >/dev/null
      as_ha pg_autoctl reload --pgdata "$dir/$name" >/dev/null
    done
    as_ha pg_autoctl show uri --pgdata "$dir/monitor" --formation default
    ;;
  uri) as_ha pg_autoctl show uri --pgdata "$dir/monitor" --formation default ;;
  state) as_ha pg_autoctl show state --pgdata "$dir/monitor" ;;
  primary)
    as_ha pg_autoctl show state --pgdata "$dir/monitor" --json | python3 -c 'import json,sys
nodes = [n for n in json.load(sys.stdin) if n["current_group_state"] == n["assigned_group_state"]]
print(*[n["nodename"] for n in nodes if n["current_group_state"] in ("primary", "wait_primary", "single")])'
    ;;
  crash)
    pid=$(autoctl_pid "${3:?node name}")
    [ -n "$pid" ] && kill -KILL -- "-$pid"  # pg_autoctl leads its process group: Postgres dies with it
    ;;
  run) service "${3:?node name}" ;;
  dirs)  # only the state directories, as start makes them (tests/ha/test_formation_dirs.py)
    install
    state_dirs
    [ "$(id -u)" != 0 ] || chown -R "$HA_USER": "$dir"
    ;;
  stop)
    for name in node2 node1 monitor; do
      pid=$(autoctl_pid "$name")
      [ -n "$pid" ] || continue
      as_ha pg_autoctl stop --pgdata "$dir/$name" || true  # pg_autoctl stops its Postgres and exits
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pid" 2>/dev/null && as_ha pg_autoctl stop --immediate --pgdata "$dir/$name" || true
      for _ in $(seq 10); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -KILL -- "-$pid" 2>/dev/null || true  # last resort: nothing of a stopped formation lingers
    done
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
