#!/usr/bin/env bash
# The layering the workspace promises (README "Layout"), checked so that it stays true:
#   - cache-proto is pure: no runtime, sockets, files or clocks in its code or its dependencies;
#   - the library a mount links (cache-client) carries no S3 server, certificate generator or CLI;
#   - the node carries no S3 server (the test harness is a dev-dependency only).
# Exits non-zero naming what broke. CI runs it (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
failed=0
fail() { echo "layering: $*" >&2; failed=1; }

# Code: the words a runtime, socket, file or clock would be reached by (comments included: a doc
# that names them is rare and easy to reword).
if hits=$(grep -rnE '\b(tokio|quinn|mio|socket2)\b|std::(net|fs|thread|process)\b|\b(Instant|SystemTime)\b' cache-proto/src); then
  fail "cache-proto must do no I/O and read no clock:"; echo "$hits" >&2
fi

deps() { cargo tree --locked -p "$1" -e normal --prefix none | sed 's/ .*//' | sort -u; }
forbid() { # crate, then the dependencies it must not have
  local crate=$1; shift
  local have; have=$(deps "$crate")
  for dep in "$@"; do
    if grep -qx "$dep" <<<"$have"; then fail "$crate depends on $dep"; fi
  done
}
forbid cache-proto tokio quinn mio socket2 object_store foyer
forbid cache-client s3s s3s-fs rcgen indicatif clap tracing-subscriber
forbid cache-node s3s s3s-fs rcgen indicatif

# The binary a user runs reads no fault switch (tests inject faults through cache_node::Hooks).
for bin in target/release/cache-node target/debug/cache-node; do
  if [[ -x $bin ]] && grep -qa MIRRORCACHE_FAULT "$bin"; then fail "$bin reads a MIRRORCACHE_FAULT switch"; fi
done

((failed == 0)) && echo "layering: cache-proto pure; cache-client and cache-node free of the harness and the CLI"
exit $failed
