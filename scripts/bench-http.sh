#!/usr/bin/env bash
# Memory hits of 4 MiB blocks at 8 in flight, side by side on this machine in one run:
#   - the load tool (`cache-bench --mode warm`, one runtime thread: TOKIO_WORKER_THREADS=1, as
#     the gateway's default) reading one node over QUIC (TLS 1.3);
#   - `cachectl gateway` beside that node, read by wrk (presigned GETs, plain HTTP/1.1 on
#     loopback, as a JuiceFS mount reads it);
#   - caddy (`tls internal`, HTTPS/1.1 with TLS 1.3) serving the same files from the page cache,
#     read by wrk: the HTTPS file server the issue compares with;
#   - nginx (plain HTTP/1.1, sendfile) serving them too, read by wrk: the ceiling of this box.
# Each row: GB/s, and the server's CPU seconds per GB served (from /proc; for the gateway row,
# the gateway's and the node's together). wrk and the load tool run on the same two cores as the
# servers, so every row pays for its client too.
#
#   scripts/bench-http.sh                      OBJECTS=64 SECONDS_EACH=10 CONCURRENCY=8
#   KEEP=1                                     keep the work directory
# Needs caddy, nginx and wrk (apt-get install caddy nginx-light wrk) and boto3 (presigning).
set -euo pipefail
cd "$(dirname "$0")/.."
OBJECTS=${OBJECTS:-64} SECONDS_EACH=${SECONDS_EACH:-10} CONCURRENCY=${CONCURRENCY:-8}
source scripts/lib/wait.sh
source scripts/lib/procs.sh
for tool in caddy nginx wrk; do
  command -v "$tool" >/dev/null || { echo "bench-http.sh needs $tool: apt-get install caddy nginx-light wrk" >&2; exit 2; }
done
python3 -c 'import boto3' 2>/dev/null || { echo "bench-http.sh needs boto3: pip install boto3" >&2; exit 2; }

echo "building (release)..."
cargo build --release -p cache-node -p cachectl -p cache-testkit -p bench --bins
bin=$PWD/target/release
W=$(mktemp -d /tmp/bench-http.XXXXXX)
BUCKET=bench VOLUME=vol1 TOKEN=vol1-token-0123456789 AK=mirrorcache-demo SK=mirrorcache-demo-secret
ORIGIN=127.0.0.1:19400 QUIC=127.0.0.1:19401 ADMIN=127.0.0.1:19402 GATEWAY=127.0.0.1:19403
CADDY=127.0.0.1:19443 NGINX=127.0.0.1:19480
declare -A pid=()
results=$W/results.tsv

cleanup() {
  set +e
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null; done
  [[ -f $W/nginx.pid ]] && kill "$(cat "$W/nginx.pid")" 2>/dev/null
  wait 2>/dev/null
  if [[ -n ${KEEP:-} ]]; then echo "logs and data kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
tick=$(getconf CLK_TCK)

# row NAME SERVER_PID BYTES SECONDS CPU_TICKS
row() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"
  echo "  $1: $(echo "scale=2; $2 / $3 / 1000000000" | bc -l) GB/s"
}

# wrk_run NAME BASE_URL URL_FILE PID...: wrk at CONCURRENCY over the URLs; bytes from its report,
# CPU of the PIDs.
wrk_run() {
  local name=$1 base=$2 urls=$3 c0 c1 out reqs bytes secs
  shift 3
  c0=$(cpu_ticks "$@")
  out=$(URLS=$urls wrk -t2 -c"$CONCURRENCY" -d"${SECONDS_EACH}s" --timeout 10s -s scripts/lib/wrk-urls.lua "$base" 2>&1)
  c1=$(cpu_ticks "$@")
  echo "$out" >"$W/wrk-${name%% *}.log"
  if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "$name: wrk saw errors" >&2; exit 1; fi
  # "1061 requests in 10.06s, 4.15GB read": bytes as requests x the block size (wrk rounds).
  read -r reqs secs < <(awk '/requests in/ {sub("s,", "", $4); print $1, $4}' <<<"$out")
  bytes=$((reqs * (4 << 20)))
  row "$name" "$bytes" "$secs" "$((c1 - c0))"
}

echo "$OBJECTS blocks of 4 MiB"
mkdir -p "$W/origin/$BUCKET"
start origin "$bin/mirror-origin" --dir "$W/origin" --listen "$ORIGIN" --bucket "$BUCKET"
wait_for "$W/origin.log" "origin serving" 0 "${pid[origin]}"
"$bin/cachectl" certs --dir "$W/certs" --nodes a --clients bench >/dev/null
"$bin/cluster-config" node a --listen "$QUIC" --admin "$ADMIN" --data-dir "$W/data-a" --memory 1GiB --disk 1GiB \
  --certs "$W/certs" --member "a=$QUIC" --origin "http://$ORIGIN" --bucket "$BUCKET" --prefix "" \
  --volume "$VOLUME" --token "$TOKEN" -o "$W/a.toml"
"$bin/cluster-config" client --name bench --certs "$W/certs" --member "a=$QUIC" --origin "http://$ORIGIN" \
  --bucket "$BUCKET" --prefix "" --volume "$VOLUME" --token "$TOKEN" -o "$W/client.toml"
"$bin/cache-bench" populate --config "$W/client.toml" --volume "$VOLUME" --objects "$OBJECTS" >/dev/null
start node "$bin/cache-node" --config "$W/a.toml"
wait_for "$W/node.log" "serving QUIC" 0 "${pid[node]}"
RUST_LOG=warn start gateway "$bin/cachectl" --config "$W/client.toml" gateway --listen "$GATEWAY"
wait_for "$W/gateway.log" "gateway serving" 0 "${pid[gateway]}"
keys=$(cd "$W/origin/$BUCKET" && find bench -type f | sort)
sed "s|^|/$BUCKET/|" <<<"$keys" >"$W/file-urls"

echo "the load tool, one node, memory hits"
c0=$(cpu_ticks "${pid[node]}")
TOKIO_WORKER_THREADS=1 "$bin/cache-bench" --config "$W/client.toml" --volume "$VOLUME" --objects "$OBJECTS" --mode warm \
  --concurrency "$CONCURRENCY" --requests 1000000 --seconds "$SECONDS_EACH" --json >"$W/load.json"
c1=$(cpu_ticks "${pid[node]}")
read -r bytes secs < <(python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(r["bytes"], r["seconds"])' "$W/load.json")
row "load tool (QUIC)" "$bytes" "$secs" "$((c1 - c0))"

echo "the gateway, read by wrk"
echo "$keys" >"$W/keys"
python3 - "$GATEWAY" "$VOLUME" "$TOKEN" "$W/keys" "$W/gateway-urls" <<'EOF'
import sys, boto3, botocore.config
endpoint, volume, token, keys, out = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://{endpoint}", aws_access_key_id=volume, aws_secret_access_key=token,
                  region_name="us-east-1", config=botocore.config.Config(signature_version="s3v4"))
with open(out, "w") as f:
    for key in open(keys).read().split():
        url = s3.generate_presigned_url("get_object", Params={"Bucket": volume, "Key": key}, ExpiresIn=3600)
        f.write(url.split(endpoint, 1)[1] + "\n")
EOF
while read -r u; do curl -sf -o /dev/null "http://$GATEWAY$u"; done <"$W/gateway-urls" # warm every block
wrk_run "gateway (HTTP/1.1)" "http://$GATEWAY" "$W/gateway-urls" "${pid[gateway]}" "${pid[node]}"

echo "caddy, tls internal (HTTPS/1.1, TLS 1.3)"
cat >"$W/Caddyfile" <<EOF
{
  admin off
  auto_https disable_redirects
  storage file_system $W/caddy-data
  servers {
    protocols h1
  }
}
https://127.0.0.1:${CADDY##*:} {
  tls internal
  root * $W/origin
  file_server
}
EOF
XDG_DATA_HOME=$W/caddy-data HOME=$W start caddy caddy run --config "$W/Caddyfile" --adapter caddyfile
for _ in $(seq 100); do curl -skf -o /dev/null "https://$CADDY$(head -n1 "$W/file-urls")" && break; sleep 0.1; done
while read -r u; do cat "$W/origin$u" >/dev/null; done <"$W/file-urls" # page cache
wrk_run "caddy (HTTPS/1.1)" "https://$CADDY" "$W/file-urls" "${pid[caddy]}"

echo "nginx (HTTP/1.1, sendfile)"
cat >"$W/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  server { listen $NGINX; root $W/origin; }
}
EOF
nginx -c "$W/nginx.conf" -p "$W"
for _ in $(seq 100); do [[ -s $W/nginx.pid ]] && break; sleep 0.1; done
npid=$(pgrep -P "$(cat "$W/nginx.pid")" | head -n1)
wrk_run "nginx (HTTP/1.1)" "http://$NGINX" "$W/file-urls" "$npid"

echo
python3 - "$results" "$tick" "$CONCURRENCY" <<'EOF' | tee target/bench-http.md
import sys
path, tick, conc = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [l.rstrip("\n").split("\t") for l in open(path)]
gbs = {name: int(b) / float(s) / 1e9 for name, b, s, _ in rows}
caddy = gbs.get("caddy (HTTPS/1.1)")
print(f"4 MiB blocks from memory, {conc} in flight, one run on this machine.\n")
print("| server | GB/s | x caddy | server CPU s/GB |")
print("|---|---:|---:|---:|")
for name, b, s, cpu in rows:
    ratio = f"{gbs[name] / caddy:.2f}" if caddy else "-"
    print(f"| {name} | {gbs[name]:.2f} | {ratio} | {int(cpu) / tick / (int(b) / 1e9):.2f} |")
EOF
echo "(also in target/bench-http.md)"
