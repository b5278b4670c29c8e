#!/usr/bin/env bash
# A throw-away 3-node Apache Cassandra 5.0.x cluster on loopback (127.0.0.1, .2, .3) for the
# cluster tests: the same jars, JVM flags and yaml as run_cassandra.sh, with the deltas measured
# for a real cluster (see CLUSTER.md beside this file). It uses its own ports, so it can run beside
# the single node of run_cassandra.sh (127.0.0.1:9042 / 7000):
#
#   CQL 9043 and storage 7010 on every address, local JMX 7211 / 7212 / 7213 (nodetool only).
#
#   ./run_cluster.sh start [3]   # fresh data dirs, nodes started one at a time, waits for UN x3
#   ./run_cluster.sh stop        # SIGTERM (drain) every node, SIGKILL after 30 s
#   ./run_cluster.sh status      # pid, CQL up/down per node, then nodetool status
#   ./run_cluster.sh kill N      # SIGKILL node N (fault injection)
#   ./run_cluster.sh restart N   # start node N again on its data (after kill/stop); waits for CQL
#   ./run_cluster.sh pause N     # SIGSTOP node N
#   ./run_cluster.sh resume N    # SIGCONT node N
#   ./run_cluster.sh contact     # prints the contact points, comma-separated
#
# Env knobs (all optional):
#   CASSANDRA_LIB           jar dir                          (default: <here>/target/cassandra-lib)
#   CASSANDRA_CLUSTER_WORK  parent of the node dirs, WIPED on start (default: /tmp/es-cassandra-cluster)
#   CASSANDRA_JAVA          java binary; must be 11 or 17
#   CASSANDRA_CLUSTER_HEAP  -Xmx per node                    (default: 768M, -Xms512M)
#   CASSANDRA_START_TIMEOUT seconds per node                 (default: 180)
#   CASSANDRA_PAXOS         paxos_variant: v1 (5.0 default) or v2 (default: v1)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIB="${CASSANDRA_LIB:-$HERE/target/cassandra-lib}"
WORK="${CASSANDRA_CLUSTER_WORK:-/tmp/es-cassandra-cluster}"
HEAP="${CASSANDRA_CLUSTER_HEAP:-768M}"
TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"
PAXOS="${CASSANDRA_PAXOS:-v1}"
CQL_PORT=9043
STORAGE_PORT=7010
SSL_STORAGE_PORT=7011
JMX_BASE=7210

die() { echo "run_cluster: $*" >&2; exit 1; }

pick_java() {
  local j=""
  if [[ -n "${CASSANDRA_JAVA:-}" ]]; then j="$CASSANDRA_JAVA"
  elif [[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]]; then j=/usr/lib/jvm/java-17-openjdk-amd64/bin/java
  elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then j="$JAVA_HOME/bin/java"
  else j="$(command -v java || true)"; fi
  [[ -n "$j" ]] || die "no java found"
  local spec
  spec="$("$j" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}')"
  case "$spec" in
    11|17) ;;
    *) die "java at $j is version '$spec'; Cassandra 5.0 supports 11 and 17 only (JDK 24+ cannot run it). Set CASSANDRA_JAVA to a JDK 17." ;;
  esac
  JAVA="$j"
}

node_dir() { echo "$WORK/n$1"; }
node_addr() { echo "127.0.0.$1"; }
pidfile() { echo "$(node_dir "$1")/cassandra.pid"; }
cql_up() { (exec 3<>"/dev/tcp/$(node_addr "$1")/$CQL_PORT") 2>/dev/null; }
is_running() { local f; f="$(pidfile "$1")"; [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; }
node_count() { local n=0; for d in "$WORK"/n[0-9]; do [[ -d "$d" ]] && n=$((n + 1)); done; echo "$n"; }
check_node() { [[ "$1" =~ ^[1-9]$ && -d "$(node_dir "$1")" ]] || die "no node $1 (nodes: $(node_count))"; }

# The yaml of node N: the single-node yaml with the cluster deltas.
gen_conf() {
  local n=$1 w; w="$(node_dir "$n")"
  mkdir -p "$w"/{data,commitlog,saved_caches,hints,cdc_raw,logs,conf,tmp}
  sed -e "s#@DATA@#$w#g" \
      -e "s#^cluster_name: .*#cluster_name: 'es-test-cluster'#" \
      -e "s#^listen_address: .*#listen_address: $(node_addr "$n")#" \
      -e "s#^rpc_address: .*#rpc_address: $(node_addr "$n")#" \
      -e "s#^storage_port: .*#storage_port: $STORAGE_PORT#" \
      -e "s#^ssl_storage_port: .*#ssl_storage_port: $SSL_STORAGE_PORT#" \
      -e "s#^native_transport_port: .*#native_transport_port: $CQL_PORT#" \
      -e "s#- seeds: .*#- seeds: \"127.0.0.1:$STORAGE_PORT\"#" \
      -e "s#^num_tokens: .*#num_tokens: 4#" \
      -e "/^initial_token:/d" \
      -e "s#^hinted_handoff_enabled: .*#hinted_handoff_enabled: true#" \
      "$HERE/conf/cassandra.yaml" > "$w/conf/cassandra.yaml"
  {
    echo "# --- 3-node cluster deltas (run_cluster.sh) ---"
    echo "allocate_tokens_for_local_replication_factor: 3"
    echo "auto_bootstrap: false            # a fresh, empty cluster: nothing to stream"
    echo "paxos_variant: $PAXOS"
  } >> "$w/conf/cassandra.yaml"
  cp "$HERE/conf/logback.xml" "$w/conf/logback.xml"
}

launch() {
  local n=$1 w; w="$(node_dir "$n")"
  local -a flags
  mapfile -t flags < <(grep -v -e '^#' -e '^[[:space:]]*$' "$HERE/conf/jvm17-server.flags")
  flags+=("-Xms512M" "-Xmx$HEAP" "-XX:+ExitOnOutOfMemoryError" "-XX:HeapDumpPath=$w/logs")
  flags+=(
    "-Dcassandra.jmx.local.port=$((JMX_BASE + n))"
    "-Dcom.sun.management.jmxremote.authenticate=false"
    "-Dcassandra.config=file://$w/conf/cassandra.yaml"
    "-Dcassandra.storagedir=$w"
    "-Dcassandra.logdir=$w/logs"
    "-Dlogback.configurationFile=$w/conf/logback.xml"
    "-Dcassandra-foreground=yes"
    "-Dcassandra.skip_wait_for_gossip_to_settle=0"
    "-Dcassandra.ring_delay_ms=5000"    # default 30 s on the seed's token allocation and on joiners
    "-Djava.io.tmpdir=$w/tmp"
    "-Djna.tmpdir=$w/tmp"
    # NOT -Dcassandra.unsafesystem=true nor -Dcassandra.test.flush_local_schema_changes=false:
    # with them a node killed with SIGKILL restarts without the schema (UnknownTableException).
  )
  # Appends so that a restart keeps the first run's log.
  echo "=== launch $(date -u +%FT%TZ) ===" >> "$w/logs/stdout.log"
  nohup "$JAVA" "${flags[@]}" -cp "$LIB/*" org.apache.cassandra.service.CassandraDaemon \
      >> "$w/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$n")"
}

# Waits until node N logged "Startup complete" (since `from` lines of system.log) and its CQL
# port answers.
wait_ready() {
  local n=$1 from=$2 w t0=$SECONDS; w="$(node_dir "$n")"
  while (( SECONDS - t0 < TIMEOUT )); do
    if ! is_running "$n"; then
      echo "run_cluster: node $n exited during startup; last log lines:" >&2
      tail -n 40 "$w/logs/system.log" "$w/logs/stdout.log" >&2 2>/dev/null || true
      return 1
    fi
    if tail -n +"$from" "$w/logs/system.log" 2>/dev/null | grep -q "Startup complete" && cql_up "$n"; then
      echo "run_cluster: node $n CQL ready on $(node_addr "$n"):$CQL_PORT after $((SECONDS - t0)) s (pid $(cat "$(pidfile "$n")"))"
      return 0
    fi
    sleep 1
  done
  echo "run_cluster: node $n not ready after $TIMEOUT s" >&2
  tail -n 40 "$w/logs/system.log" >&2 2>/dev/null || true
  return 1
}

log_lines() { local f; f="$(node_dir "$1")/logs/system.log"; if [[ -f "$f" ]]; then echo $(( $(wc -l < "$f") + 1 )); else echo 1; fi; }

nodetool() {
  local n=${NODETOOL_NODE:-1}
  local -a addflags
  mapfile -t addflags < <(grep '^--add-' "$HERE/conf/jvm17-server.flags")
  "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -Dlogback.configurationFile="$HERE/conf/logback-tool.xml" \
      "${addflags[@]}" -cp "$LIB/*" org.apache.cassandra.tools.NodeTool \
      -h 127.0.0.1 -p $((JMX_BASE + n)) "$@"
}

wait_all_up() {
  local want=$1 t0=$SECONDS up=0
  while (( SECONDS - t0 < 60 )); do
    up="$(nodetool status 2>/dev/null | grep -c '^UN' || true)"
    if (( up == want )); then echo "run_cluster: nodetool status: UN x$want after $((SECONDS - t0)) s"; return 0; fi
    sleep 2
  done
  echo "run_cluster: only $up of $want nodes UN after 60 s" >&2
  nodetool status >&2 || true
  return 1
}

start() {
  local count=${1:-3}
  [[ "$count" =~ ^[1-9]$ ]] || die "node count must be 1 to 9 (not $count)"
  for n in $(seq 1 "$count"); do
    is_running "$n" && die "node $n already running (pid $(cat "$(pidfile "$n")")); run: $0 stop"
    cql_up "$n" && die "something already listens on $(node_addr "$n"):$CQL_PORT"
  done
  compgen -G "$LIB/cassandra-all-*.jar" >/dev/null || die "no cassandra-all jar in $LIB (run: mvn -B -q -f $HERE/pom.xml package)"
  pick_java
  rm -rf "$WORK"
  local t0=$SECONDS
  echo "run_cluster: $JAVA ($("$JAVA" -version 2>&1 | head -1)), lib=$LIB, work=$WORK, $count nodes, paxos $PAXOS"
  # One at a time: a joining node must see the previous ones settled.
  for n in $(seq 1 "$count"); do
    gen_conf "$n"
    launch "$n"
    wait_ready "$n" 1 || { stop; exit 1; }
  done
  wait_all_up "$count" || { stop; exit 1; }
  echo "run_cluster: cluster of $count up after $((SECONDS - t0)) s; contact points $(contact)"
}

stop_node() {
  local n=$1
  is_running "$n" || { rm -f "$(pidfile "$n")"; return 0; }
  local pid; pid="$(cat "$(pidfile "$n")")"
  kill -CONT "$pid" 2>/dev/null || true            # a paused node cannot drain
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || { rm -f "$(pidfile "$n")"; echo "run_cluster: node $n stopped"; return 0; }; sleep 1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$(pidfile "$n")"
  echo "run_cluster: node $n killed after 30 s"
}

stop() {
  local count; count="$(node_count)"
  (( count > 0 )) || { echo "run_cluster: not running"; return 0; }
  # In parallel: each node drains on its own.
  local -a pids=()
  for n in $(seq 1 "$count"); do stop_node "$n" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || true; done
}

status() {
  local count; count="$(node_count)"
  (( count > 0 )) || { echo "not running"; return 0; }
  local any=0
  for n in $(seq 1 "$count"); do
    if is_running "$n"; then
      any=1
      local state; state="$(awk '{print $3}' "/proc/$(cat "$(pidfile "$n")")/stat" 2>/dev/null || echo '?')"
      echo "node $n $(node_addr "$n"):$CQL_PORT running pid $(cat "$(pidfile "$n")") (state $state); cql $(cql_up "$n" && echo up || echo down)"
    else
      echo "node $n $(node_addr "$n"):$CQL_PORT not running"
    fi
  done
  if (( any )); then pick_java; nodetool status 2>&1 | grep -E '^(UN|DN|UJ|DJ|UL|DL|--|Datacenter)' || true; fi
}

contact() {
  local count; count="$(node_count)"; (( count > 0 )) || count=3
  local out=""
  for n in $(seq 1 "$count"); do out+="${out:+,}$(node_addr "$n"):$CQL_PORT"; done
  echo "$out"
}

signal_node() {
  local n=$1 sig=$2; check_node "$n"
  is_running "$n" || die "node $n is not running"
  kill "-$sig" "$(cat "$(pidfile "$n")")"
  echo "run_cluster: node $n sent SIG$sig"
}

restart() {
  local n=$1; check_node "$n"
  if is_running "$n"; then die "node $n is still running"; fi
  compgen -G "$LIB/cassandra-all-*.jar" >/dev/null || die "no cassandra-all jar in $LIB"
  pick_java
  local from; from="$(log_lines "$n")"
  launch "$n"
  wait_ready "$n" "$from"
}

case "${1:-}" in
  start) start "${2:-3}" ;;
  stop) stop ;;
  status) status ;;
  kill) signal_node "${2:?node}" KILL; sleep 0.2; rm -f "$(pidfile "$2")" ;;
  pause) signal_node "${2:?node}" STOP ;;
  resume) signal_node "${2:?node}" CONT ;;
  restart) restart "${2:?node}" ;;
  contact) contact ;;
  nodetool) shift; pick_java; nodetool "$@" ;;
  *) echo "usage: $0 start [N]|stop|status|kill N|restart N|pause N|resume N|contact|nodetool ARGS" >&2; exit 2 ;;
esac
