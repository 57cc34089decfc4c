#!/usr/bin/env bash
# The paper's Tables 1 and 2 on the embedded spurious-digits data: the standard model and a fresh model trained only
# on the perturbations of each of five methods (pgd-l2, pgd-linf, pgd-l0, cfe-l2, pcfe-l0), under both target rules
# (random: the paper's code; random-other: its Definition 4.1), for several seeds; then lfp report.
#
#   bash examples/five_methods.sh [--quick] [--seeds 0,1,2] [--out DIR] [--targets random,random-other]
#                                 [--methods pgd-l2,pgd-linf,pgd-l0,cfe-l2,pcfe-l0] [--limit N]
#
# Every stage uses the seed of its run (lfp train/perturb/retrain --seed S) and every other setting is lfp's
# default, so each number traces to the commands this script prints. Resumable: a stage whose output exists is
# skipped (lfp writes outputs atomically, so an existing file is a finished one), and an interrupted stage is
# finished with --resume. Run times per stage go to DIR/times.tsv (wall seconds and CPU seconds of lfp).
#
# --quick draws each training digit once instead of five times (spurious-digits:train_copies=1: 1,078 training
# images instead of 5,390; the same digits, the same val and test images, the same 95% background correlation),
# so every stage that touches the training split costs a fifth; every method and training setting stays lfp's
# default. --limit N perturbs only the first N training images and retrains on those (outputs under DIR/sS/RULE-limitN;
# the standard models are shared): a smaller experiment for a busy machine, reported as its own columns (the
# report names perturb.limit as the setting that splits them). Measured run times are in docs/study.md.
set -euo pipefail

quick=0
seeds="0,1,2"
out=""
targets="random,random-other"
methods="pgd-l2,pgd-linf,pgd-l0,cfe-l2,pcfe-l0"
limit=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --seeds) seeds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --targets) targets="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --limit) limit="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "five_methods.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$quick" = 1 ]; then
  data="spurious-digits:train_copies=1"; out="${out:-five-methods-quick}"
else
  data="spurious-digits"; out="${out:-five-methods}"
fi
LFP="${LFP:-lfp}"
IFS=, read -r -a seed_list <<< "$seeds"
IFS=, read -r -a target_list <<< "$targets"
IFS=, read -r -a method_list <<< "$methods"
if [ -n "$limit" ] && ! [[ "$limit" =~ ^[1-9][0-9]*$ ]]; then
  echo "five_methods.sh: --limit takes a positive number of images, got $limit" >&2; exit 2
fi
lim=()
sfx=""
if [ -n "$limit" ]; then lim=(--limit "$limit"); sfx="-limit$limit"; fi

source "$(dirname "$0")/stage.sh"

start=$(date +%s)
for s in "${seed_list[@]}"; do
  d="$out/s$s"
  mkdir -p "$d"
  stage "s$s/train" "$d/std.pt" "$LFP" train --data "$data" --arch small-cnn --seed "$s" --out "$d/std.pt" --resume --quiet
  stage "s$s/eval-std" "$d/eval_std.json" "$LFP" eval --in "$d/std.pt" --out "$d/eval_std.json" --quiet
  for t in "${target_list[@]}"; do
    mkdir -p "$d/$t$sfx"
    for m in "${method_list[@]}"; do
      stage "s$s/$t$sfx/$m/perturb" "$d/$t$sfx/$m.h5" "$LFP" perturb --method "$m" --targets "$t" --in "$d/std.pt" --seed "$s" \
        --out "$d/$t$sfx/$m.h5" --resume --quiet "${lim[@]}"
      stage "s$s/$t$sfx/$m/retrain" "$d/$t$sfx/$m.pt" "$LFP" retrain --in "$d/$t$sfx/$m.h5" --seed "$s" --out "$d/$t$sfx/$m.pt" --resume --quiet
      stage "s$s/$t$sfx/$m/eval" "$d/$t$sfx/eval_$m.json" "$LFP" eval --in "$d/$t$sfx/$m.pt" --out "$d/$t$sfx/eval_$m.json" --quiet
    done
  done
done

# the tables: grouping comes from the eval reports' provenance (method, target rule, density, data, settings)
evals=()
for s in "${seed_list[@]}"; do
  evals+=("$out/s$s/eval_std.json")
  for t in "${target_list[@]}"; do
    for m in "${method_list[@]}"; do evals+=("$out/s$s/$t$sfx/eval_$m.json"); done
  done
done
"$LFP" report "${evals[@]}" --out "$out/tables$sfx.md" --force > /dev/null
"$LFP" report "${evals[@]}" --out "$out/tables$sfx.csv" --force > /dev/null
for t in "${target_list[@]}"; do
  # one target rule at a time, the paper's layout (the standard model has no target rule, so it stays)
  "$LFP" report "${evals[@]}" --where "targets=$t" --out "$out/tables_$t$sfx.md" --force > /dev/null
  ckpts=()
  for s in "${seed_list[@]}"; do
    ckpts+=("$out/s$s/std.pt")
    for m in "${method_list[@]}"; do ckpts+=("$out/s$s/$t$sfx/$m.pt"); done
  done
  "$LFP" report --curves "${ckpts[@]}" --out "$out/curves_$t$sfx.png" --title "spurious-digits ($data), $t targets" --force > /dev/null
done
for t in "${target_list[@]}"; do
  echo
  echo "== $t targets =="
  cat "$out/tables_$t$sfx.md"
done
echo
echo "tables: $out/tables.md (all), $out/tables_<rule>.md, $out/tables.csv; curves: $out/curves_<rule>.png; stage times: $out/times.tsv"
echo "this invocation: $(( $(date +%s) - start )) s (stages skipped because their outputs existed cost nothing)"
