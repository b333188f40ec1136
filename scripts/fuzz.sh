#!/usr/bin/env bash
# Fuzzes every decoder of bytes that come from a peer or an operator (fuzz/, cargo-fuzz with
# libFuzzer): request frames and bodies, response heads for each request kind, the Members and
# Status JSON, gossip datagrams, and client and node config files. Prints one line per target
# (executions, crashes) and exits non-zero if any target crashed; a crash's input is kept in
# fuzz/artifacts/TARGET/ (replay it with `cargo fuzz run TARGET FILE`, same flags as below).
#
#   scripts/fuzz.sh                      # 20 s per target (8 targets: ~3 min, plus the build)
#   scripts/fuzz.sh --long               # 10 min per target, for a nightly or before a release
#   scripts/fuzz.sh --seconds 60 request_decode gossip_handle_data
#
# The build is cargo-fuzz's own (release, debug assertions and overflow checks on, coverage
# instrumentation): the first one compiles the whole dependency tree again, about 15 minutes on
# 2 busy cores; later ones only what changed. Set CARGO_TARGET_DIR to keep it between runs.
#
# cargo-fuzz passes nightly-only flags to rustc; this project uses stable Rust, so the script
# sets RUSTC_BOOTSTRAP=1, which lets stable accept them. The sanitizer is off by default: all
# code here is safe Rust (unsafe_code = deny), so AddressSanitizer would double the build and
# slow every run for bugs that cannot happen in it; what we look for is panics, overflows, hangs
# and unbounded memory. FUZZ_SANITIZER=address turns it on.
#
# Corpora grow in fuzz/corpus/TARGET (not committed); fuzz/seeds/TARGET and configs/ seed them.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=20
TARGETS=()
while (($#)); do
  case $1 in
    --long) SECONDS_EACH=600 ;;
    --seconds) SECONDS_EACH=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1") ;;
  esac
  shift
done

export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
FLAGS=(--sanitizer "${FUZZ_SANITIZER:-none}" --debug-assertions --codegen-units 16)
((${#TARGETS[@]})) || mapfile -t TARGETS < <(cargo fuzz list)

echo "=== building the fuzz targets ($(date -u +%H:%M:%S))"
cargo fuzz build "${FLAGS[@]}"

LOGS=$(mktemp -d /tmp/mirrorcache-fuzz.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT
failed=0
started=$SECONDS
for target in "${TARGETS[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  seeds=()
  [[ -d fuzz/seeds/$target ]] && seeds+=("fuzz/seeds/$target")
  [[ $target == *_config ]] && seeds+=(configs)
  before=$(find "fuzz/artifacts/$target" -type f | wc -l)
  log=$LOGS/$target.log
  status=0
  # -timeout: one input taking longer is a hang; -rss_limit_mb: more memory is a bug here.
  cargo fuzz run "${FLAGS[@]}" "$target" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [[ -n $runs ]] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  crashes=$(($(find "fuzz/artifacts/$target" -type f | wc -l) - before))
  if ((status != 0 && crashes == 0)); then crashes=1; fi
  corpus_size=$(find "$corpus" -type f | wc -l)
  printf '%-26s runs=%-12s crashes=%-3s corpus=%-6s seconds=%s\n' \
    "$target" "${runs:-?}" "$crashes" "$corpus_size" "$SECONDS_EACH"
  if ((crashes > 0)); then
    failed=1
    { grep -m1 'panicked at' "$log" || grep -m1 'ERROR: libFuzzer' "$log" || true; } | sed 's/^/    /'
    sed -n 's/.*Test unit written to /    input: /p' "$log"
  fi
done
echo "=== fuzzed ${#TARGETS[@]} targets in $((SECONDS - started)) s"
exit $failed
