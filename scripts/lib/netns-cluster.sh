# Shared by scripts/membership.sh and scripts/faults.sh (source it; needs root): cache nodes in
# network namespaces mc-<id> (veth pairs on bridge mcbr0, addresses 10.77.0.0/24 that exist only
# inside this machine), with the origin and the clients in the root namespace. Everything is
# undone by `cluster_cleanup` (call it from an EXIT trap).
#
# Provides: W (work dir), BIN, NET, addr ID, node_config ID HANDOFF_SECS, start_node ID,
# ctl ARGS (cachectl with the client config), status_json, ring_ids, origin_gets, converged,
# wait_ring "a b c" [secs], figure, check NAME OK DETAIL, and $fail (1 once a check failed).

BIN=${BIN:-target/debug}
NET=10.77.0
BR=mcbr0
NODES=(a b c d)
W=$(mktemp -d /tmp/mc-netns.XXXXXX)
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
  if [[ -n "${KEEP:-}" ]]; then echo "logs kept in $W"; else rm -rf "$W"; fi
}

cluster_build() {
  # The debug build the tests made (CI builds once); a no-op when it is there.
  # (mirror-origin, the demo S3 origin, is cache-testkit's bin.)
  cargo build --quiet --locked --workspace --bins
}

addr() { local i; for i in "${!NODES[@]}"; do [[ ${NODES[$i]} == "$1" ]] && echo "$NET.$((11 + i))"; done; }

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

volume_toml() {
  cat <<TOML
[[volume]]
name = "vol1"
token = "vol1-token-0123456789"
[[volume.origin]]
url = "s3://demo/vol1"
endpoint = "http://$NET.1:9000"
region = "us-east-1"
access_key_id = "mirrorcache-demo"
secret_access_key = "mirrorcache-demo-secret"
allow_http = true
TOML
}

# Certificates, the origin, and the client config (gossip, seeded by a and b).
cluster_base() {
  "$BIN/cachectl" certs --dir "$W/certs" --nodes a,b,c,d --clients client >/dev/null
  mkdir -p "$W/logs" "$W/origin/demo"
  "$BIN/mirror-origin" --dir "$W/origin" --listen $NET.1:9000 >"$W/logs/origin.log" 2>&1 &
  pids+=($!)
  cat >"$W/client.toml" <<TOML
[cluster]
membership = "gossip"
seeds = ["$(addr a):7000", "$(addr b):7000"]
[tls]
ca = "$W/certs/ca.pem"
cert = "$W/certs/client.pem"
key = "$W/certs/client.key"
[client]
connect_timeout = "1s"
page_timeout = "10s"
origin_timeout = "10s"
$(volume_toml)
TOML
}

# node_config ID HANDOFF_SECS
node_config() {
  cat >"$W/$1.toml" <<TOML
[node]
id = "$1"
listen = "$(addr "$1"):7000"
admin_listen = "$(addr "$1"):9100"
data_dir = "$W/data/$1"
operators = ["client"]
handoff = "${2}s"
origin_timeout = "10s"
[cache]
memory_capacity = "512MiB"
disk_capacity = "1GiB"
direct_io = false
[tls]
ca = "$W/certs/ca.pem"
cert = "$W/certs/$1.pem"
key = "$W/certs/$1.key"
[cluster]
membership = "gossip"
seeds = ["$(addr a):7000", "$(addr b):7000"]
$(volume_toml)
TOML
}

start_node() {
  ip netns exec "mc-$1" "$BIN/cache-node" --config "$W/$1.toml" >>"$W/logs/$1.log" 2>&1 &
  node_pid[$1]=$!
  pids+=($!)
  local before
  before=$(grep -c "serving QUIC" "$W/logs/$1.log" || true)
  for _ in $(seq 300); do
    (($(grep -c "serving QUIC" "$W/logs/$1.log" || true) > before)) && return 0
    sleep 0.1
  done
  tail "$W/logs/$1.log" >&2; echo "node $1 did not start" >&2; exit 1
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
