#!/usr/bin/env bash
# Start a local 3-node mirrorcache cluster on loopback, with a local S3 origin holding sample
# JuiceFS-shaped blocks, on the defaults in configs/local/. Ctrl-C stops everything cleanly
# (nodes flush their caches, so the next start is warm). State lives in .local/.
#
#   scripts/local-cluster.sh            build (release), start, print how to read, wait
#   scripts/local-cluster.sh --clean    forget the caches, certificates and sample data first
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--clean" ]]; then rm -rf .local; fi

echo "building (release)..."
cargo build --release -p cache-node -p cachectl -p cache-testkit --bins
bin=target/release
mkdir -p .local/logs

if [[ ! -f .local/certs/ca.pem ]]; then
  "$bin/cachectl" certs --dir .local/certs --nodes a,b,c --clients client >/dev/null
fi

pids=()
stop() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then
    echo
    echo "stopping..."
    # Nodes first (SIGTERM: finish requests, flush the cache), then the origin (SIGINT: report).
    kill -TERM "${pids[@]:1}" 2>/dev/null || true
    wait "${pids[@]:1}" 2>/dev/null || true
    kill -INT "${pids[0]}" 2>/dev/null || true
    wait "${pids[0]}" 2>/dev/null || true
    tail -n 1 .local/logs/origin.log
  fi
}
trap stop INT TERM EXIT

source scripts/lib/wait.sh

sample=()
[[ -d .local/origin/demo/vol1 ]] || sample=(--sample vol1)
"$bin/mirror-origin" --dir .local/origin --listen 127.0.0.1:9000 "${sample[@]}" >.local/logs/origin.log 2>&1 &
pids+=($!)
wait_for .local/logs/origin.log "origin serving" 0 "${pids[0]}"

declare -A node
for n in a b c; do
  "$bin/cache-node" --config "configs/local/$n.toml" >".local/logs/$n.log" 2>&1 &
  pids+=($!)
  node[$n]=$!
done
for n in a b c; do wait_for ".local/logs/$n.log" "serving QUIC" 0 "${node[$n]}"; done

cat <<MSG

mirrorcache local cluster is up: nodes a, b, c on 127.0.0.1:7001-7003 (QUIC), admin HTTP on
:9001-9003, origin s3://demo on http://127.0.0.1:9000 with sample blocks of volume vol1.

  # read a block through the cache (run twice: the second read is a memory hit)
  $bin/cachectl --config configs/local/client.toml get vol1 myjfs/chunks/0/0/1_0_4194304 -o /tmp/block -v

  # members, key-space shares, hits, misses, bytes, cache use
  $bin/cachectl --config configs/local/client.toml status

  # Prometheus metrics of node a
  curl -s http://127.0.0.1:9001/metrics | grep ^mirrorcache_

Logs are in .local/logs/. Press Ctrl-C to stop.
MSG
wait "${pids[@]}"
