#!/usr/bin/env bash
# Membership on several hosts: cache nodes in network namespaces this script creates (one per
# node, veth pairs on a bridge, addresses 10.77.0.0/24 that exist only inside this machine),
# with the origin and the client (the `cache-bench check` reader) in the root namespace.
#
#   1. join, handoff off: 3 nodes, warmed; a 4th joins; origin GETs vs pages whose owner changed
#   2. the whole life, handoff on, under a checker that reads continuously and checks every byte:
#      3 nodes warmed; a 4th joins under load; drain one; kill -9 one; bring it back
#
# Prints one line per figure and exits non-zero if any target is missed. Needs root (ip netns).
# Cleans up after itself (namespaces, bridge, processes), also on failure or Ctrl-C.
#
#   sudo scripts/membership.sh            # ~3 minutes on 2 cores
#   OBJECTS=64 SECONDS_LOAD=120 scripts/membership.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OBJECTS=${OBJECTS:-48}          # 4 MiB objects the checker reads (whole, ranges, across pages)
HANDOFF=${HANDOFF:-20}          # seconds of warm handoff (and of a drain's wait)
CONCURRENCY=${CONCURRENCY:-4}
BIN=${BIN:-target/debug}
NET=10.77.0
BR=mcbr0
NODES=(a b c d)
W=$(mktemp -d /tmp/mc-membership.XXXXXX)
pids=()

[[ $(id -u) == 0 ]] || { echo "membership.sh needs root (ip netns)" >&2; exit 2; }
for tool in ip jq; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 2; }; done

cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in "${NODES[@]}"; do ip netns del "mc-$n" 2>/dev/null; ip link del "mc-$n-h" 2>/dev/null; done
  ip link del $BR 2>/dev/null
  if [[ -n "${KEEP:-}" ]]; then echo "logs kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT INT TERM

echo "== build"
# The debug build the tests made (CI builds once); a no-op when it is there.
cargo build --quiet --locked -p cache-node --features testkit --bins
cargo build --quiet --locked -p cache-client --bins
cargo build --quiet --locked -p bench --bins

echo "== network: bridge $BR, namespaces mc-{a,b,c,d} on $NET.0/24"
ip link add $BR type bridge
ip addr add $NET.1/24 dev $BR
ip link set $BR up
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
addr() { local i; for i in "${!NODES[@]}"; do [[ ${NODES[$i]} == "$1" ]] && echo "$NET.$((11 + i))"; done; }

"$BIN/cachectl" certs --dir "$W/certs" --nodes a,b,c,d --clients client >/dev/null
mkdir -p "$W/logs" "$W/origin/demo"
"$BIN/mirror-origin" --dir "$W/origin" --listen $NET.1:9000 >"$W/logs/origin.log" 2>&1 &
pids+=($!)

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
$(volume_toml)
TOML

declare -A node_pid
start_node() {
  ip netns exec "mc-$1" "$BIN/cache-node" --config "$W/$1.toml" >>"$W/logs/$1.log" 2>&1 &
  node_pid[$1]=$!
  pids+=($!)
  for _ in $(seq 300); do grep -q "serving QUIC" "$W/logs/$1.log" && return 0; sleep 0.1; done
  cat "$W/logs/$1.log" >&2; echo "node $1 did not start" >&2; exit 1
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
fail=0
figure() { echo "FIGURE $*"; }
check() { # check NAME OK(0/1) DETAIL
  if [[ $2 == 1 ]]; then echo "PASS $1: $3"; else echo "FAIL $1: $3"; fail=1; fi
}

"$BIN/cache-bench" populate --config "$W/client.toml" --volume vol1 --objects "$OBJECTS" >/dev/null
pages=$OBJECTS

echo "== 1. join with handoff off"
for n in a b c; do node_config $n 0; start_node $n; done
node_config d 0
wait_ring "a b c"
warm
status_json >"$W/before.json"
gets0=$(origin_gets)
start_node d
wait_ring "a b c d"
status_json >"$W/after.json"
warm # reads every page at its owner once: a moved page is a miss at its new owner
gets1=$(origin_gets)
moved=$("$BIN/ring-diff" --before "$W/before.json" --after "$W/after.json" --volume vol1 --objects "$OBJECTS" | jq .moved)
extra=$((gets1 - gets0))
figure "join_handoff_off pages=$pages moved=$moved origin_gets=$extra"
check "join without handoff: origin GETs <= 1.2 x moved pages" $((extra * 10 <= moved * 12)) "$extra GETs for $moved moved pages"
for p in "${node_pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
wait "${node_pid[@]}" 2>/dev/null || true
rm -rf "$W/data"

echo "== 2. join, drain, kill -9 and return under a checker (handoff ${HANDOFF}s)"
for n in a b c d; do node_config $n "$HANDOFF"; done
for n in a b c; do start_node $n; done
wait_ring "a b c"
warm
# The checker: reads continuously until told to stop; one progress line per second.
t_check=$(date +%s.%N)
"$BIN/cache-bench" check --config "$W/client.toml" --volume vol1 --objects "$OBJECTS" \
  --concurrency "$CONCURRENCY" --seconds 600 --progress --json \
  >"$W/check.json" 2>"$W/check.progress" &
checker=$!
pids+=($checker)
sleep 10
t_join=$(date +%s.%N)
status_json >"$W/before.json"
gets0=$(origin_gets)
start_node d
wait_ring "a b c d"
status_json >"$W/after.json"
sleep 10
gets1=$(origin_gets)
moved=$("$BIN/ring-diff" --before "$W/before.json" --after "$W/after.json" --volume vol1 --objects "$OBJECTS" | jq .moved)
handed=$(status_json | jq '[.members[] | select(.id == "d") | .status.handoff_pages] | add')
extra=$((gets1 - gets0))
figure "join_handoff_on pages=$pages moved=$moved origin_gets=$extra handed_off=$handed"
check "join with handoff: far fewer origin GETs than moved pages" $((extra * 4 <= moved)) "$extra GETs for $moved moved pages ($handed handed off)"

echo "-- drain b"
ctl drain b --timeout $((HANDOFF + 60)) | tail -n 1
kill -TERM "${node_pid[b]}"; wait "${node_pid[b]}" 2>/dev/null || true
# Once stopped, b leaves the ring (its goodbye, or its probes failing).
wait_ring "a c d" 30

echo "-- kill -9 c"
t_kill=$(date +%s.%N)
kill -9 "${node_pid[c]}"
wait "${node_pid[c]}" 2>/dev/null || true
while [[ "$(ring_ids)" != "a d" ]]; do sleep 0.1; done
removed=$(echo "$(date +%s.%N) - $t_kill" | bc)
figure "kill_to_removal_secs=$removed"
check "a killed node leaves the ring within 10 s" "$(echo "$removed < 10" | bc)" "${removed}s"

echo "-- c comes back"
start_node c
wait_ring "a c d" 30
sleep 10
kill -TERM $checker
wait $checker || true
summary=$(tail -n 1 "$W/check.json")
echo "checker: $summary"
wrong=$(jq '.wrong' <<<"$summary"); errors=$(jq '.errors' <<<"$summary"); reads=$(jq '.reads' <<<"$summary")
short=$(jq '.short' <<<"$summary")
figure "checker reads=$reads wrong=$wrong short=$short errors=$errors"
check "0 wrong bytes, 0 short and 0 failed reads" $((wrong == 0 && short == 0 && errors == 0 && reads > 0)) "$reads reads"

# Hit ratio after the join: back to 95% of the 5 s before it, within 60 s?
recovery=$(python3 - "$W/check.progress" "$t_join" "$t_check" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
t_join_abs = float(sys.argv[2])
start = float(sys.argv[3])
t_join = t_join_abs - start
before = [l["hit_ratio"] for l in lines if t_join - 5 <= l["t"] < t_join and l.get("hit_ratio") is not None]
base = sum(before) / len(before) if before else 1.0
for l in lines:
    if l["t"] > t_join + 1 and l.get("hit_ratio") is not None and l["hit_ratio"] >= 0.95 * base:
        print(f"{l['t'] - t_join:.1f}"); break
else:
    print("never")
PY
)
figure "hit_ratio_recovery_secs=$recovery"
if [[ $recovery =~ ^[0-9.]+$ ]]; then
  check "hit ratio back to 95% within 60 s of the join" "$(echo "$recovery <= 60" | bc)" "${recovery}s"
else
  check "hit ratio back to 95% within 60 s of the join" 0 "$recovery"
fi
exit $fail
