# Shared by scripts/membership.sh, scripts/faults.sh and scripts/bench.sh (source it; needs
# root): cache nodes in network namespaces mc-<id> (veth pairs on bridge mcbr0, addresses
# 10.77.0.0/24 that exist only inside this machine), with the origin and the clients in the root
# namespace; or, before `cluster_network`, on loopback. Everything is undone by
# `cluster_cleanup` (call it from an EXIT trap).
#
# Provides: W (work dir; set it before sourcing to keep the files), BIN, NET, addr ID,
# node_config ID HANDOFF_SECS [FLAGS], start_node ID, stop_nodes, wait_for FILE TEXT [N],
# ctl ARGS (cachectl with the client config), status_json, ring_ids, origin_gets, converged,
# wait_ring "a b c" [secs], figure, check NAME OK DETAIL, and $fail (1 once a check failed).

BIN=${BIN:-target/debug}
NET=10.77.0
BR=mcbr0
NODES=(a b c d)
own_w=
if [[ -z "${W:-}" ]]; then W=$(mktemp -d /tmp/mc-netns.XXXXXX); own_w=1; fi
mkdir -p "$W/logs"
pids=()
fail=0
declare -A node_pid

[[ $(id -u) == 0 ]] || { echo "$(basename "$0") needs root (ip netns)" >&2; exit 2; }
for tool in ip jq bc nft; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 2; }; done

cluster_cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  nft delete table inet mcfault 2>/dev/null
  if [[ -d /sys/fs/cgroup/memory/mc-fault-b ]]; then
    cat /sys/fs/cgroup/memory/mc-fault-b/cgroup.procs 2>/dev/null | while read -r p; do echo "$p" >/sys/fs/cgroup/memory/cgroup.procs; done
    rmdir /sys/fs/cgroup/memory/mc-fault-b
  fi
  for n in "${NODES[@]}"; do ip netns del "mc-$n" 2>/dev/null; ip link del "mc-$n-h" 2>/dev/null; done
  ip link del $BR 2>/dev/null
  if [[ -n "${KEEP:-}" || -z "$own_w" ]]; then echo "logs kept in $W"; else rm -rf "$W"; fi
}

source "$(dirname "${BASH_SOURCE[0]}")/wait.sh"

cluster_build() {
  # The debug build the tests made (CI builds once); a no-op when it is there.
  # (mirror-origin, the demo S3 origin, is cache-testkit's bin.)
  cargo build --quiet --locked --workspace --bins
}

# addr ID: the node's address in its namespace (fails for an unknown id).
addr() {
  local i
  for i in "${!NODES[@]}"; do
    if [[ ${NODES[$i]} == "$1" ]]; then echo "$NET.$((11 + i))"; return 0; fi
  done
  return 1
}

cluster_network() {
  ip link add $BR type bridge
  ip addr add $NET.1/24 dev $BR
  ip link set $BR up
  local i n
  for i in "${!NODES[@]}"; do
    n=${NODES[$i]}
    ip netns add "mc-$n"
    ip link add "mc-$n-h" type veth peer name eth0 netns "mc-$n"
    ip link set "mc-$n-h" master $BR up
    ip -n "mc-$n" addr add "$NET.$((11 + i))/24" dev eth0
    ip -n "mc-$n" link set eth0 up
    ip -n "mc-$n" link set lo up
    ip -n "mc-$n" route add default via $NET.1
  done
}

# Configs come from cluster-config (cache-testkit), built with the same builders as the tests'.
# The origin, the volume and its token are mirror-origin's demo ones (cluster-config's defaults).
origin_flags=(--origin "http://$NET.1:9000" --certs "$W/certs")
seed_flags() { echo --seed "$(addr a):7000" --seed "$(addr b):7000"; }

# Certificates, the origin, and the client config (gossip, seeded by a and b).
cluster_base() {
  "$BIN/cachectl" certs --dir "$W/certs" --nodes a,b,c,d --clients client >/dev/null
  mkdir -p "$W/logs" "$W/origin/demo"
  "$BIN/mirror-origin" --dir "$W/origin" --listen $NET.1:9000 >"$W/logs/origin.log" 2>&1 &
  pids+=($!)
  # shellcheck disable=SC2046
  "$BIN/cluster-config" client "${origin_flags[@]}" $(seed_flags) \
    --connect-timeout 1s --page-timeout 10s --origin-timeout 10s -o "$W/client.toml"
}

# node_config ID HANDOFF_SECS [MORE cluster-config FLAGS]: $W/ID.toml, QUIC on ${QUIC_PORT:-7000}.
node_config() {
  local id=$1 handoff=$2
  shift 2
  # shellcheck disable=SC2046
  "$BIN/cluster-config" node "$id" --listen "$(addr "$id"):${QUIC_PORT:-7000}" --admin "$(addr "$id"):9100" \
    --data-dir "$W/data/$id" --operator client --handoff "${handoff}s" --origin-timeout 10s \
    --memory 512MiB --disk 1GiB --no-direct-io "${origin_flags[@]}" $(seed_flags) "$@" -o "$W/$id.toml"
}

# start_node ID: node ID from $W/ID.toml, in its namespace if there is one, until it serves.
start_node() {
  local wrap=() before
  [[ -e /run/netns/mc-$1 ]] && wrap=(ip netns exec "mc-$1")
  before=$(grep -c "serving QUIC" "$W/logs/$1.log" 2>/dev/null) || before=0
  "${wrap[@]}" "$BIN/cache-node" --config "$W/$1.toml" >>"$W/logs/$1.log" 2>&1 &
  node_pid[$1]=$!
  pids+=($!)
  wait_for "$W/logs/$1.log" "serving QUIC" "$before" $!
}

# stop_nodes: SIGTERM every node started, and wait for each to exit.
stop_nodes() {
  local n
  for n in "${!node_pid[@]}"; do kill -TERM "${node_pid[$n]}" 2>/dev/null || true; done
  for n in "${!node_pid[@]}"; do wait "${node_pid[$n]}" 2>/dev/null || true; done
  node_pid=()
}

ctl() { "$BIN/cachectl" --config "$W/client.toml" "$@"; }
status_json() { ctl status --json 2>/dev/null; }
# ring_ids: the ring as a node tells it, e.g. "a b c".
ring_ids() { status_json | jq -r '[.members[].id] | join(" ")'; }
origin_gets() { status_json | jq '[.members[].status.origin_requests // 0] | add'; }
# converged: every member answers and reports the same ring epoch.
converged() { status_json | jq -e '[.members[] | .status.epoch // "down"] | unique | length == 1' >/dev/null; }
wait_ring() { # wait_ring "a b c d" [limit seconds]: that ring, the same on every member
  local limit=${2:-30} start=$SECONDS
  while [[ "$(ring_ids)" != "$1" ]] || ! converged; do
    ((SECONDS - start < limit)) || { echo "ring is '$(ring_ids)', not '$1' after ${limit}s" >&2; exit 1; }
    sleep 0.2
  done
}
warm() { ctl warmup vol1 bench/ >/dev/null; }
figure() { echo "FIGURE $*"; }
check() { # check NAME OK(0/1) DETAIL
  if [[ $2 == 1 ]]; then echo "PASS $1: $3"; else echo "FAIL $1: $3"; fail=1; fi
}
