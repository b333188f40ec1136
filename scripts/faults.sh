#!/usr/bin/env bash
# The fault suite on several hosts: a 3-node gossip cluster in network namespaces (see
# scripts/lib/netns-cluster.sh), the origin and the checker (`cache-bench check`: concurrent
# readers, every byte compared with the origin) in the root namespace. One scenario at a time,
# each under its own checker run, each fault undone before the next; one line per scenario:
#
#   SCENARIO name reads=… wrong=… short=… errors=… late=… p99_ms=… max_ms=… hedged/fallback…
#
# and PASS/FAIL lines for its targets (0 wrong, 0 short, 0 failed reads while the origin is
# healthy, no read past its deadline). Exits non-zero if any target is missed.
#
#   sudo scripts/faults.sh              # the whole suite, ~12 minutes on 2 cores (with the fault tests)
#   FAST=1 scripts/faults.sh            # shorter scenarios (what CI runs)
#   KEEP=1 scripts/faults.sh            # keep logs and checker outputs
#   ONLY=stall,memory scripts/faults.sh # some: none kill stall partition loss netem slow down memory tests
#
# `none` (no fault, first) is the baseline the netem and down figures are compared with.
set -euo pipefail
cd "$(dirname "$0")/.."

OBJECTS=${OBJECTS:-32}
FAULT_SECS=${FAULT_SECS:-$([[ -n "${FAST:-}" ]] && echo 8 || echo 20)}
# The client's own bound on a read: two nodes' page deadlines and the origin's (client.toml).
DEADLINE=${DEADLINE:-30s}
ONLY=${ONLY:-}   # e.g. ONLY=stall,memory: run only these scenarios
want() { [[ -z $ONLY || ,$ONLY, == *",$1,"* ]]; }
declare -A relay_pid
source scripts/lib/netns-cluster.sh
trap cluster_cleanup EXIT INT TERM

echo "== build"
cluster_build
cluster_network
cluster_base
"$BIN/cache-bench" populate --config "$W/client.toml" --volume vol1 --objects "$OBJECTS" >/dev/null
for n in a b c; do node_config $n 10; start_node $n; done
wait_ring "a b c"
warm

# run_checker NAME: starts the checker in the background for the current scenario.
run_checker() {
  "$BIN/cache-bench" check --config "$W/client.toml" --volume vol1 --objects "$OBJECTS" \
    --concurrency 4 --seconds 600 --deadline "$DEADLINE" --json >"$W/$1.json" 2>"$W/$1.err" &
  checker=$!
  pids+=($checker)
  sleep 2
}

# finish NAME [allow-errors]: stops the checker, prints the scenario line and checks its targets.
finish() {
  sleep 2
  kill -TERM $checker
  wait $checker || true
  local s
  s=$(tail -n 1 "$W/$1.json")
  [[ -n $s ]] || { check "$1" 0 "checker printed no summary: $(tail -n 3 "$W/$1.err")"; return; }
  echo "SCENARIO $1 $(jq -r '"reads=\(.reads) wrong=\(.wrong) short=\(.short) errors=\(.errors) late=\(.late) p50_ms=\(.p50_ms|floor) p99_ms=\(.p99_ms|floor) max_ms=\(.max_ms|floor) origin_fallback_pages=\(.pages_origin_fallback) node_miss_pages=\(.pages_miss)"' <<<"$s")"
  local ok
  ok=$(jq '.wrong == 0 and .short == 0 and .reads > 0' <<<"$s")
  check "$1: 0 wrong and 0 short reads" "$([[ $ok == true ]] && echo 1 || echo 0)" "$(jq -c '{reads,wrong,short}' <<<"$s")"
  if [[ ${2:-} != allow-errors ]]; then
    ok=$(jq '.errors == 0 and .late == 0' <<<"$s")
    check "$1: 0 failed reads, none past the ${DEADLINE} deadline" "$([[ $ok == true ]] && echo 1 || echo 0)" \
      "$(jq -c '{errors,late,errors_by_kind}' <<<"$s")"
  fi
}

# over_none NAME: a figure line, NAME's p99 as a multiple of the no-fault run's (when both ran).
over_none() {
  [[ -s $W/none.json && -s $W/$1.json ]] || return 0
  figure "$1 p99_over_no_fault=$(jq -n --argjson a "$(tail -n 1 "$W/$1.json")" --argjson b "$(tail -n 1 "$W/none.json")" \
    '($a.p99_ms / $b.p99_ms * 100 | floor) / 100')"
}

nft_reset() { nft delete table inet mcfault 2>/dev/null || true; }
# nft_drop EXPR...: drops packets matching EXPR on the root namespace's paths (client <-> nodes).
nft_drop() {
  nft add table inet mcfault
  nft add chain inet mcfault out '{ type filter hook output priority 0; }'
  nft add chain inet mcfault in '{ type filter hook input priority 0; }'
  "$@"
}

if want none; then
  echo "== 0. no fault: the baseline"
  run_checker none
  sleep "$FAULT_SECS"
  finish none
fi

if want kill; then
  echo "== 1. kill -9 mid-transfer, repeatedly"
  run_checker kill
  for round in 1 2 3; do
    for n in b c; do
      kill -9 "${node_pid[$n]}"; wait "${node_pid[$n]}" 2>/dev/null || true
      sleep 1
      start_node $n
      sleep 2
    done
  done
  finish kill
fi

if want stall; then
  echo "== 2. a node stalled (SIGSTOP: connections open, no bytes) for ${FAULT_SECS}s"
  run_checker stall
  kill -STOP "${node_pid[b]}"
  sleep "$FAULT_SECS"
  kill -CONT "${node_pid[b]}"
  finish stall
fi

if want partition; then
  echo "== 3. partition: client -> node c dropped (one way), then both ways"
  run_checker partition
  nft_drop nft add rule inet mcfault out ip daddr "$(addr c)" drop
  sleep $((FAULT_SECS / 2))
  nft add rule inet mcfault in ip saddr "$(addr c)" drop
  sleep $((FAULT_SECS / 2))
  nft_reset
  finish partition
fi

if want loss; then
  echo "== 4. 5% random loss on every link of the root namespace"
  run_checker loss
  nft_drop nft add rule inet mcfault out ip daddr $NET.0/24 numgen random mod 100 '<' 5 drop
  nft add rule inet mcfault in ip saddr $NET.0/24 numgen random mod 100 '<' 5 drop
  sleep "$FAULT_SECS"
  nft_reset
  finish loss
fi

if want netem; then
  echo "== 4b. delay 10-15 ms, 2% reordered, 1% duplicated on every node's links (a UDP relay in front of each node)"
  # Each node moves to port 7001 and keeps advertising 7000, where its relay listens.
  for n in a b c; do
    kill -TERM "${node_pid[$n]}"; wait "${node_pid[$n]}" 2>/dev/null || true
    QUIC_PORT=7001 node_config $n 10 --advertise "$(addr $n):7000"
    ip netns exec "mc-$n" "$BIN/cache-bench" udp-relay --listen "$(addr $n):7000" --upstream "$(addr $n):7001" \
      --delay 10ms --jitter 5ms --reorder 0.02 --duplicate 0.01 >"$W/logs/relay-$n.log" 2>&1 &
    relay_pid[$n]=$!
    pids+=($!)
    start_node $n
  done
  wait_ring "a b c" 60
  run_checker netem
  sleep "$FAULT_SECS"
  finish netem
  over_none netem
  for n in a b c; do
    kill -TERM "${node_pid[$n]}"; wait "${node_pid[$n]}" 2>/dev/null || true
    kill -TERM "${relay_pid[$n]}"; wait "${relay_pid[$n]}" 2>/dev/null || true
    echo "relay $n: $(tail -n 1 "$W/logs/relay-$n.log")"
    node_config $n 10
    start_node $n
  done
  wait_ring "a b c" 60
fi

if want slow; then
  echo "== 5. slow link: node a's link capped at 20 Mbit/s (tc tbf)"
  run_checker slow
  tc qdisc add dev mc-a-h root tbf rate 20mbit burst 32kbit latency 400ms
  ip netns exec mc-a tc qdisc add dev eth0 root tbf rate 20mbit burst 32kbit latency 400ms
  sleep "$FAULT_SECS"
  tc qdisc del dev mc-a-h root
  ip netns exec mc-a tc qdisc del dev eth0 root
  finish slow
fi

if want down; then
  echo "== 6. the whole cache cluster down (SIGSTOP every node): reads go to the origin"
  run_checker down
  for n in a b c; do kill -STOP "${node_pid[$n]}"; done
  sleep "$FAULT_SECS"
  for n in a b c; do kill -CONT "${node_pid[$n]}"; done
  finish down
fi

if want memory; then
  echo "== 7. memory pressure: node b (256 MiB memory tier, 32 MiB of fills) in a 448 MiB memory cgroup, 32 cold reads in flight"
  cg=/sys/fs/cgroup/memory/mc-fault-b
  if [[ -d /sys/fs/cgroup/memory ]] && mkdir -p $cg 2>/dev/null; then
    echo $((448 << 20)) >$cg/memory.limit_in_bytes
    [[ -f $cg/memory.memsw.limit_in_bytes ]] && echo $((448 << 20)) >$cg/memory.memsw.limit_in_bytes 2>/dev/null || true
    # Restart b inside the cgroup with a memory tier and fill budget that fit in it.
    kill -TERM "${node_pid[b]}"; wait "${node_pid[b]}" 2>/dev/null || true
    node_config b 10 --memory 256MiB --max-fill-bytes 32MiB
    echo $$ >$cg/cgroup.procs   # this shell, so the node starts inside; moved back below
    start_node b
    echo $$ >/sys/fs/cgroup/memory/cgroup.procs
    wait_ring "a b c"
    "$BIN/cache-bench" populate --config "$W/client.toml" --volume vol1 --objects 160 --prefix cold >/dev/null
    mem_checkers=()
    for i in 1 2; do
      "$BIN/cache-bench" check --config "$W/client.toml" --volume vol1 --objects 160 --prefix cold --seed $i \
        --concurrency 16 --seconds "$FAULT_SECS" --deadline "$DEADLINE" --json >"$W/memory$i.json" 2>"$W/memory$i.err" &
      pids+=($!)
      mem_checkers+=($!)
    done
    wait "${mem_checkers[@]}" || true
    for i in 1 2; do
      s=$(tail -n 1 "$W/memory$i.json")
      echo "SCENARIO memory$i $(jq -r '"reads=\(.reads) wrong=\(.wrong) short=\(.short) errors=\(.errors) late=\(.late) p99_ms=\(.p99_ms|floor) max_ms=\(.max_ms|floor) origin_fallback_pages=\(.pages_origin_fallback) errors_by_kind=\(.errors_by_kind|tojson)"' <<<"$s")"
      # Busy answers send readers to the origin, which this one machine can saturate: origin
      # timeouts are the origin's errors (typed); anything else is the cache's.
      ok=$(jq '.wrong == 0 and .short == 0 and .late == 0 and .reads > 0 and ([.errors_by_kind | keys[] | select(. != "origin_timeout" and . != "origin")] | length == 0)' <<<"$s")
      check "memory$i: right bytes; the only errors are the origin's" "$([[ $ok == true ]] && echo 1 || echo 0)" "$(jq -c '{reads,wrong,short,errors_by_kind,late}' <<<"$s")"
    done
    alive=$(kill -0 "${node_pid[b]}" 2>/dev/null && echo 1 || echo 0)
    ooms=$(awk '/oom_kill /{print $2}' $cg/memory.oom_control 2>/dev/null)
    peak=$(($(cat $cg/memory.max_usage_in_bytes) >> 20))
    busy=$(curl -s "http://$(addr b):9100/metrics" | awk '/^mirrorcache_node_errors_total\{kind="busy"\}/{print $2}')
    figure "memory peak_mib=$peak limit_mib=448 oom_kills=${ooms:-0} busy_answers=${busy:-0}"
    check "memory: node b alive, never OOM-killed" $((alive == 1 && ${ooms:-0} == 0)) "peak ${peak} MiB of 448, ${busy:-0} Busy answers"
  else
    echo "SKIP memory: no cgroup v1 memory controller here"
  fi
fi

if want tests && [[ -z "${FAST:-}" ]]; then
  # The scenarios that need no second host run as tests (CI runs them with the others).
  echo "== 8. the fault tests: origin, stalled node, disk, single flight, hostile input, TLS"
  for t in origin_faults node_faults disk_faults single_flight hostile security; do
    # One module of the node's integration-test binary (`cache-node/tests/it/`) per area.
    if cargo nextest run --locked -p cache-node --test it -E "test(/^$t::/)" >"$W/test-$t.log" 2>&1; then
      echo "SCENARIO test-$t $(grep -E 'Summary' "$W/test-$t.log" | sed 's/^ *//')"
      check "test $t" 1 "passed"
    else
      check "test $t" 0 "see $W/test-$t.log (KEEP=1 keeps it)"
    fi
  done
fi

exit $fail
