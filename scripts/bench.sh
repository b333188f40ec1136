#!/usr/bin/env bash
# Every figure of BENCHMARKS.md in one run on this machine, side by side (about 12 minutes on
# 2 cores once built). Prints the table and writes it, with the raw outputs, to target/bench/.
# Needs root for the scale part (network namespaces and tc tbf); installs fio if missing.
#
#   scripts/bench.sh            everything
#   SKIP_CRITERION=1 scripts/bench.sh   only fio, the cluster and the scale runs
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/bench
rm -rf "$out"
mkdir -p "$out"
bin=$root/target/release
pids=()
namespaces=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  for ns in "${namespaces[@]}"; do
    ip link del "$ns-h" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  namespaces=()
}
trap cleanup EXIT INT TERM

step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }

# wait_for FILE TEXT: poll a log for a readiness line (60 s at most).
wait_for() {
  for _ in $(seq 600); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2
  cat "$1" >&2
  exit 1
}

command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio >/dev/null; }

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

"$bin/cachectl" certs --dir "$out/certs" --nodes a,b,c,s1,s2,s3 --clients client >/dev/null
ak=mirrorcache-demo
sk=mirrorcache-demo-secret

# node_toml ID LISTEN_IP ORIGIN_ENDPOINT: a node config in $out/ID.toml.
node_toml() {
  cat >"$out/$1.toml" <<TOML
[node]
id = "$1"
listen = "$2:7001"
admin_listen = "$2:9001"
data_dir = "$out/data/$1"
[cache]
memory_capacity = "384MiB"
disk_capacity = "1GiB"
[tls]
ca = "$out/certs/ca.pem"
cert = "$out/certs/$1.pem"
key = "$out/certs/$1.key"
[[volume]]
name = "vol1"
token = "bench-token-vol1"
[[volume.origin]]
url = "s3://demo/vol1"
endpoint = "http://$3"
access_key_id = "$ak"
secret_access_key = "$sk"
allow_http = true
TOML
}

# client_toml FILE ORIGIN_ENDPOINT MEMBER...: members as id=ip.
client_toml() {
  local file=$1 endpoint=$2
  shift 2
  local members=()
  for m in "$@"; do members+=("{ id = \"${m%%=*}\", addr = \"${m#*=}:7001\" }"); done
  cat >"$file" <<TOML
[cluster]
members = [ $(IFS=,; echo "${members[*]}") ]
[tls]
ca = "$out/certs/ca.pem"
cert = "$out/certs/client.pem"
key = "$out/certs/client.key"
[[volume]]
name = "vol1"
token = "bench-token-vol1"
[[volume.origin]]
url = "s3://demo/vol1"
endpoint = "http://$endpoint"
access_key_id = "$ak"
secret_access_key = "$sk"
allow_http = true
TOML
}

# start_node ID [NETNS]: start a node from $out/ID.toml (in a namespace if given).
start_node() {
  local wrap=()
  [[ -n "${2:-}" ]] && wrap=(ip netns exec "$2")
  rm -rf "$out/data/$1"
  "${wrap[@]}" "$bin/cache-node" --config "$out/$1.toml" >"$out/$1.log" 2>&1 &
  pids+=($!)
  node_pids+=($!)
  wait_for "$out/$1.log" "serving QUIC"
}

stop_nodes() {
  for pid in "${node_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${node_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  node_pids=()
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
"$bin/mirror-origin" --dir "$out/origin" --listen 127.0.0.1:9000 --access-key "$ak" --secret-key "$sk" >"$out/origin.log" 2>&1 &
pids+=($!)
wait_for "$out/origin.log" "origin serving"
"$bin/cache-bench" proxy --listen 127.0.0.1:9400 --upstream 127.0.0.1:9000 --delay 50ms >"$out/proxy.log" 2>&1 &
pids+=($!)
client_toml "$out/client-direct.toml" 127.0.0.1:9000 a=127.0.0.1 b=127.0.0.2 c=127.0.0.3
client_toml "$out/client-delayed.toml" 127.0.0.1:9400 a=127.0.0.1 b=127.0.0.2 c=127.0.0.3
"$bin/cache-bench" populate --config "$out/client-direct.toml" "${objects[@]}" >"$out/populate.log"

node_pids=()
for phase in direct delayed; do
  endpoint=127.0.0.1:9000
  suffix=""
  conc=8
  if [[ $phase == delayed ]]; then endpoint=127.0.0.1:9400; suffix=_delayed; conc=1; fi
  i=1
  for n in a b c; do node_toml "$n" "127.0.0.$i" "$endpoint"; start_node "$n"; i=$((i + 1)); done
  "$bin/cache-bench" --config "$out/client-$phase.toml" "${objects[@]}" --mode origin,cold,warm \
    --concurrency "$conc" --requests 400 --seconds 20 --node-pids "$(IFS=,; echo "${node_pids[*]}")" --json |
    label "$suffix" | tee -a "$out/load.jsonl"
  if [[ $phase == delayed ]]; then
    # JuiceFS's random reads: 128 KiB ranges inside the (now cached) blocks, against the origin.
    "$bin/cache-bench" --config "$out/client-$phase.toml" "${objects[@]}" --mode origin,warm --range 128KiB \
      --concurrency 1 --requests 200 --seconds 15 --json | label "${suffix}_128k" | tee -a "$out/load.jsonl"
  fi
  stop_nodes
done

step "scale: 1, 2, 3 nodes in network namespaces, each link capped at 200 Mbit/s"
# Many small objects, so each node's share of the keys is close to its share of the ring (a
# closed-loop load runs at the pace of the node with the most keys).
scale_objects=(--volume vol1 --objects 768 --object-size 256KiB --prefix scale)
scale_origin=10.77.1.1:9000
for i in 1 2 3; do
  ns=mcbench$i
  ip netns add "$ns"
  namespaces+=("$ns")
  ip link add "$ns-h" type veth peer name "$ns-n"
  ip link set "$ns-n" netns "$ns"
  ip addr add "10.77.$i.1/24" dev "$ns-h"
  ip link set "$ns-h" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip addr add "10.77.$i.2/24" dev "$ns-n"
  ip netns exec "$ns" ip link set "$ns-n" up
  ip netns exec "$ns" ip route add default via "10.77.$i.1"
  # The node's sending side is the page direction: cap it.
  ip netns exec "$ns" tc qdisc add dev "$ns-n" root tbf rate 200mbit burst 1mb latency 100ms
  node_toml "s$i" "10.77.$i.2" "$scale_origin"
done
"$bin/mirror-origin" --dir "$out/origin" --listen "$scale_origin" --access-key "$ak" --secret-key "$sk" >"$out/scale-origin.log" 2>&1 &
pids+=($!)
wait_for "$out/scale-origin.log" "origin serving"
client_toml "$out/client-scale-populate.toml" "$scale_origin" s1=10.77.1.2
"$bin/cache-bench" populate --config "$out/client-scale-populate.toml" "${scale_objects[@]}" >"$out/scale-populate.log"
for n in 1 2 3; do
  members=()
  for m in $(seq 1 "$n"); do
    members+=("s$m=10.77.$m.2")
    start_node "s$m" "mcbench$m"
  done
  client_toml "$out/client-scale$n.toml" "$scale_origin" "${members[@]}"
  "$bin/cache-bench" --config "$out/client-scale$n.toml" "${scale_objects[@]}" --mode warm --concurrency 24 \
    --requests 100000 --seconds 15 --json | label "_scale$n" | sed 's/"label": "warm_scale/"label": "scale_/' |
    tee -a "$out/load.jsonl"
  stop_nodes
done
stop_nodes
cleanup

step "report"
python3 scripts/bench_report.py "$out/criterion" "$out/fio.json" "$out/load.jsonl" | tee "$out/report.md"
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); raw outputs in $out"
