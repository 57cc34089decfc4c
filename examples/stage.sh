# Shared by the example scripts (sourced, not run): `stage NAME OUTPUT COMMAND...` runs COMMAND unless OUTPUT exists
# and appends NAME, wall seconds and CPU seconds to $out/times.tsv; the command's stdout goes to $out/logs/NAME.log.
mkdir -p "$out/logs"
touch "$out/times.tsv"

# seconds of CPU (user + system) used by finished child processes so far, from bash's `times` (run in this shell:
# a $(...) subshell would count its own children only); scratch files carry this shell's pid, since several
# scripts may run side by side on one $out
child_cpu() {
  times > "$out/logs/.times.$$"
  tail -n 1 "$out/logs/.times.$$" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] } printf "%.1f", s }'
}
now() { date +%s.%N; }

# stage NAME OUTPUT COMMAND...: run COMMAND unless OUTPUT exists; log its wall and CPU seconds
stage() {
  local name="$1" output="$2"; shift 2
  if [ -e "$output" ]; then
    echo "skip  $name ($output exists)"
    return 0
  fi
  echo "run   $name: $*"
  local t0 c0 t1 c1
  t0=$(now); child_cpu > "$out/logs/.c0.$$"
  "$@" > "$out/logs/${name//\//_}.log"
  t1=$(now); child_cpu > "$out/logs/.c1.$$"
  c0=$(cat "$out/logs/.c0.$$"); c1=$(cat "$out/logs/.c1.$$")
  awk -v n="$name" -v a="$t0" -v b="$t1" -v c="$c0" -v e="$c1" 'BEGIN { printf "%s\t%.1f\t%.1f\n", n, b - a, e - c }' >> "$out/times.tsv"
  awk -v a="$t0" -v b="$t1" -v c="$c0" -v e="$c1" 'BEGIN { printf "      done: %.0f s wall, %.0f s CPU\n", b - a, e - c }'
}

# A pool of at most $jobs jobs side by side (--jobs): `pool_start LABEL LOG COMMAND...` waits for a free slot, then
# runs COMMAND in the background with its output in LOG and $threads torch threads; `pool_finish` waits for every
# job started, names each one that failed on stderr, leaves their labels in pool_failed and returns 1 if any did.
# A job's exit status goes to LOG.rc, so a status is never lost to `wait -n` reaping its process first.
pool_pids=()
pool_labels=()
pool_logs=()
pool_failed=()
# pool_setup: $threads (OMP_NUM_THREADS if set, else cores / $jobs, at least 1) and $args, the options a job passes
# to the script that starts it (its data, folder and --limit, and --jobs 1)
pool_setup() {
  threads="${OMP_NUM_THREADS:-$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 ))}"
  args=(--data "$dataset" --out "$out" --jobs 1)
  if [ "$quick" = 1 ]; then args+=(--quick); fi
  if [ -n "$limit" ]; then args+=(--limit "$limit"); fi
}
pool_start() {
  local label="$1" log="$2"; shift 2
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  rm -f "$log.rc"
  { rc=0; OMP_NUM_THREADS="$threads" "$@" > "$log" 2>&1 || rc=$?; echo "$rc" > "$log.rc"; } &
  pool_pids+=("$!")
  pool_labels+=("$label")
  pool_logs+=("$log")
  echo "$label: running (log: $log, $threads thread(s))"
}
pool_finish() {
  local i rc
  pool_failed=()
  for i in "${!pool_pids[@]}"; do
    wait "${pool_pids[$i]}" 2> /dev/null || true
    rc=$(cat "${pool_logs[$i]}.rc" 2> /dev/null || echo 1)
    rm -f "${pool_logs[$i]}.rc"
    if [ "$rc" != 0 ]; then
      echo "${pool_labels[$i]} failed; see ${pool_logs[$i]}" >&2
      pool_failed+=("${pool_labels[$i]}")
    fi
  done
  pool_pids=()
  pool_labels=()
  pool_logs=()
  [ "${#pool_failed[@]}" = 0 ]
}
