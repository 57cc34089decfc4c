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
