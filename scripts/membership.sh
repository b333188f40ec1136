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
#   OBJECTS=64 HANDOFF=30 KEEP=1 scripts/membership.sh   # KEEP: leave the logs
set -euo pipefail
cd "$(dirname "$0")/.."

OBJECTS=${OBJECTS:-48}          # 4 MiB objects the checker reads (whole, ranges, across pages)
HANDOFF=${HANDOFF:-20}          # seconds of warm handoff (and of a drain's wait)
CONCURRENCY=${CONCURRENCY:-4}
source scripts/lib/netns-cluster.sh
trap cluster_cleanup EXIT INT TERM

echo "== build"
cluster_build
echo "== network: bridge $BR, namespaces mc-{a,b,c,d} on $NET.0/24"
cluster_network
cluster_base

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
