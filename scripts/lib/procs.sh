# Processes of the bench scripts (source it): each is started by name, logs to $W/NAME.log and
# is found in the caller's `declare -A pid=()`.

# start NAME CMD...: CMD in the background, logging to $W/NAME.log.
start() {
  local name=$1; shift
  "$@" >"$W/$name.log" 2>&1 &
  pid[$name]=$!
}

# stop NAME...: kill and reap them (names not running are skipped).
stop() {
  local name
  for name in "$@"; do
    [[ -n ${pid[$name]:-} ]] || continue
    kill "${pid[$name]}" 2>/dev/null || true
    wait "${pid[$name]}" 2>/dev/null || true
    unset "pid[$name]"
  done
}

# cpu_ticks PID...: user+system clock ticks of those processes so far.
cpu_ticks() {
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
