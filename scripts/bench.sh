#!/usr/bin/env bash
# Every figure of BENCHMARKS.md in one run on this machine, side by side (about 12 minutes on
# 2 cores once built). Prints the table and writes it, with the raw outputs, to target/bench/.
# Needs root (network namespaces and tc tbf for the scale part); installs fio, jq, bc, nft if missing.
#
#   scripts/bench.sh            everything
#   SKIP_CRITERION=1 scripts/bench.sh   only fio, the cluster and the scale runs
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/bench
rm -rf "$out"
mkdir -p "$out"

step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }

need=()
for tool in ip jq bc nft tc; do command -v $tool >/dev/null || need+=("$tool"); done
command -v fio >/dev/null || need+=(fio)
if ((${#need[@]})); then
  apt-get update -qq && apt-get install -y -qq iproute2 nftables jq bc fio >/dev/null
fi
# Namespaces, readiness waits, node start and stop, and clean-up are the multi-host scripts'
# (scripts/lib/netns-cluster.sh); the nodes' files and logs go to $out.
BIN=$root/target/release W=$out
source scripts/lib/netns-cluster.sh
trap cluster_cleanup EXIT INT TERM

step "build (release)"
cargo build --release -p cache-node -p cachectl -p cache-testkit --bins
cargo build --release --quiet -p cache-client --bins
cargo build --release --quiet -p bench --bins

if [[ -z "${SKIP_CRITERION:-}" ]]; then
  step "criterion: codec, ring, store tiers, loopback vs bare quinn"
  cargo bench -p bench --benches -- --warm-up-time 1 --measurement-time 4 --noplot 2>&1 | tee "$out/criterion.txt" |
    grep -E '^[a-z_0-9]+/|time:|thrpt:' || true
  rm -rf "$out/criterion" && cp -r "$root/target/criterion" "$out/criterion"
fi

step "fio: sequential 4 MiB reads with O_DIRECT, the disk the cache lives on"
fio --name=seqread --directory="$out" --size=1G --bs=4M --direct=1 --rw=read --ioengine=psync \
  --runtime=10 --time_based --output-format=json >"$out/fio.json"
# Again with fio's buffer on huge pages (the node's allocator puts its page buffers on
# transparent huge pages; on a virtual disk that alone changes the O_DIRECT rate several-fold).
hugepages=$(cat /proc/sys/vm/nr_hugepages)
echo 8 >/proc/sys/vm/nr_hugepages
fio --name=seqread --directory="$out" --size=1G --bs=4M --direct=1 --rw=read --ioengine=psync --iomem=shmhuge \
  --runtime=10 --time_based --output-format=json >"$out/fio-huge.json" || echo "fio with huge pages failed" >&2
echo "$hugepages" >/proc/sys/vm/nr_hugepages
rm -f "$out"/seqread.*
for f in fio fio-huge; do
  python3 -c "import json;print(f\"$f: {json.load(open('$out/$f.json'))['jobs'][0]['read']['bw_bytes']/2**20:,.0f} MiB/s\")" || true
done

"$BIN/cachectl" certs --dir "$out/certs" --nodes a,b,c --clients client >/dev/null
volume=(--certs "$out/certs" --token bench-token-vol1)

# node_config ID LISTEN_IP ORIGIN_ENDPOINT: a node config in $out/ID.toml (QUIC on 7001).
node_config() {
  "$BIN/cluster-config" node "$1" --listen "$2:7001" --admin "$2:9001" --data-dir "$out/data/$1" \
    --memory 384MiB --disk 1GiB --origin "http://$3" "${volume[@]}" -o "$out/$1.toml"
}

# start ID: node ID with an empty cache.
start() { rm -rf "$out/data/$1"; start_node "$1"; }

# client_config FILE ORIGIN_ENDPOINT MEMBER...: members as id=ip (QUIC on 7001).
client_config() {
  local file=$1 endpoint=$2 members=() m
  shift 2
  for m in "$@"; do members+=(--member "$m:7001"); done
  "$BIN/cluster-config" client --origin "http://$endpoint" "${volume[@]}" "${members[@]}" -o "$file"
}

# label SUFFIX: prefix each JSON line with "label": "<mode>SUFFIX".
label() { python3 -c "
import json, sys
for line in sys.stdin:
    if line.startswith('{'):
        j = json.loads(line); j['label'] = j['mode'] + '$1'; print(json.dumps(j))
"; }

objects=(--volume vol1 --objects 48 --object-size 4MiB --prefix bench)

step "cluster: 3 nodes on loopback, origin direct and behind a 50 ms proxy"
"$BIN/mirror-origin" --dir "$out/origin" --listen 127.0.0.1:9000 >"$out/logs/origin.log" 2>&1 &
pids+=($!)
wait_for "$out/logs/origin.log" "origin serving" 0 $!
"$BIN/cache-bench" proxy --listen 127.0.0.1:9400 --upstream 127.0.0.1:9000 --delay 50ms >"$out/logs/proxy.log" 2>&1 &
pids+=($!)
client_config "$out/client-direct.toml" 127.0.0.1:9000 a=127.0.0.1 b=127.0.0.2 c=127.0.0.3
client_config "$out/client-delayed.toml" 127.0.0.1:9400 a=127.0.0.1 b=127.0.0.2 c=127.0.0.3
"$BIN/cache-bench" populate --config "$out/client-direct.toml" "${objects[@]}" >"$out/populate.log"

for phase in direct delayed; do
  endpoint=127.0.0.1:9000
  suffix=""
  conc=8
  if [[ $phase == delayed ]]; then endpoint=127.0.0.1:9400; suffix=_delayed; conc=1; fi
  i=1
  for n in a b c; do node_config "$n" "127.0.0.$i" "$endpoint"; start "$n"; i=$((i + 1)); done
  "$BIN/cache-bench" --config "$out/client-$phase.toml" "${objects[@]}" --mode origin,cold,warm \
    --concurrency "$conc" --requests 400 --seconds 20 --node-pids "$(IFS=,; echo "${node_pid[*]}")" --json |
    label "$suffix" | tee -a "$out/load.jsonl"
  if [[ $phase == delayed ]]; then
    # JuiceFS's random reads: 128 KiB ranges inside the (now cached) blocks, against the origin.
    "$BIN/cache-bench" --config "$out/client-$phase.toml" "${objects[@]}" --mode origin,warm --range 128KiB \
      --concurrency 1 --requests 200 --seconds 15 --json | label "${suffix}_128k" | tee -a "$out/load.jsonl"
  fi
  stop_nodes
done

step "scale: 1, 2, 3 nodes in network namespaces, each link capped at 200 Mbit/s"
# Many small objects, so each node's share of the keys is close to its share of the ring (a
# closed-loop load runs at the pace of the node with the most keys).
scale_objects=(--volume vol1 --objects 768 --object-size 256KiB --prefix scale)
scale_origin=$NET.1:9000
cluster_network
for n in a b c; do
  # The node's sending side is the page direction: cap it.
  ip netns exec "mc-$n" tc qdisc add dev eth0 root tbf rate 200mbit burst 1mb latency 100ms
  node_config "$n" "$(addr "$n")" "$scale_origin"
done
"$BIN/mirror-origin" --dir "$out/origin" --listen "$scale_origin" >"$out/logs/scale-origin.log" 2>&1 &
pids+=($!)
wait_for "$out/logs/scale-origin.log" "origin serving" 0 $!
client_config "$out/client-scale-populate.toml" "$scale_origin" "a=$(addr a)"
"$BIN/cache-bench" populate --config "$out/client-scale-populate.toml" "${scale_objects[@]}" >"$out/scale-populate.log"
for n in 1 2 3; do
  members=()
  for m in "${NODES[@]:0:n}"; do
    members+=("$m=$(addr "$m")")
    start "$m"
  done
  client_config "$out/client-scale$n.toml" "$scale_origin" "${members[@]}"
  "$BIN/cache-bench" --config "$out/client-scale$n.toml" "${scale_objects[@]}" --mode warm --concurrency 24 \
    --requests 100000 --seconds 15 --json | label "_scale$n" | sed 's/"label": "warm_scale/"label": "scale_/' |
    tee -a "$out/load.jsonl"
  stop_nodes
done

step "report"
python3 scripts/bench_report.py "$out/criterion" "$out/fio.json" "$out/load.jsonl" | tee "$out/report.md"
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); raw outputs in $out"
