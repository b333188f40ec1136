# Readiness waits shared by the scripts that start processes (source it): a process is ready when
# its log says so, never after a sleep.

# wait_for FILE TEXT [COUNT] [PID]: until FILE holds TEXT on more than COUNT lines (default 0),
# 60 s at most. Gives up at once if process PID (the one writing FILE) has exited. On failure it
# shows the log's end and exits.
wait_for() {
  local file=$1 text=$2 before=${3:-0} pid=${4:-} now
  for _ in $(seq 600); do
    now=$(grep -c "$text" "$file" 2>/dev/null) || now=0
    ((now > before)) && return 0
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$file" >&2; echo "the process writing $file exited before '$text'" >&2; exit 1
    fi
    sleep 0.1
  done
  tail -n 20 "$file" >&2; echo "timed out waiting for '$text' in $file" >&2; exit 1
}
