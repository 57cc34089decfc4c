#!/usr/bin/env bash
# The paper's Tables 1 and 2 on lfp's embedded spurious data: the standard model and a fresh model trained only on the
# perturbations of each of five methods (pgd-l2, pgd-linf, pgd-l0, cfe-l2, pcfe-l0), under both target rules
# (random: the paper's code; random-other: its Definition 4.1), for several seeds; then lfp report.
#
#   bash examples/five_methods.sh [--data spurious-digits|spurious-scenes] [--quick] [--seeds 0,1,2] [--out DIR]
#                                 [--targets random,random-other] [--methods pgd-l2,pgd-linf,pgd-l0,cfe-l2,pcfe-l0]
#                                 [--limit N] [--jobs J]
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
# report names perturb.limit as the setting that splits them). --jobs J runs J processes at a time, each with
# OMP_NUM_THREADS = cores / J unless you set it (on a small machine several one-thread processes get more done than
# one process using every core: lfp's models are small): first each seed's models, then every (method, target rule,
# seed) arm, the longest methods first, so no core waits for one seed's last arms; the results are the same, logs
# in DIR/logs/seedS.log and seedS-RULE-METHOD.log. Measured run times are in docs/study.md.
#
# --data spurious-scenes (default DIR five-methods-scenes): the WaterBirds-like testbed (docs/testbed.md), every
# model started from one pretrained network, as the paper's are from ImageNet's. Stages:
#   once       DIR/pretrain.pt: lfp train --data scenes-pretrain --seed 0 (shared by every seed; to reuse a
#              pretrained file, copy it there before the first run). With --jobs it is made before the seeds start.
#   per seed   sS/std.pt: lfp train --data spurious-scenes --weights DIR/pretrain.pt (the standard model; the
#              testbed's default architecture and training settings), sS/eval_std.json;
#              sS/balanced.pt: the same with --balance groups (the group-balanced reference: every (class, place)
#              group drawn equally often), sS/eval_balanced.json;
#              then per target rule and method as above, lfp retrain --init pretrained (the fresh model starts from
#              the same pretrained file, as in the paper's code);
#              and for every model (standard, balanced, each arm) lfp saliency on 512 test images drawn with the
#              seed (--n 512: every model of a seed sees the same images), the maps in sS/.../saliency_NAME.h5
#              and its summary in saliency_NAME.json.
#   tables     DIR/tables.md|.csv|.json and DIR/tables_RULE.md|.json (lfp report --baseline: the standard model's
#              column, Original, found by its eval report; the balanced model is its own column,
#              Group-balanced); DIR/attribution_RULE.md (tools: examples/study_tables.py):
#              per column the attribution share on the object over all images and in the group where it is lowest,
#              beside chance (the mask's area), mean (std) over seeds.
# --quick with spurious-scenes uses a quarter of its training images (spurious-scenes:train_size=1200: the same
# correlation, val and test images and pretrained start; default DIR five-methods-scenes-quick). --data takes
# parameters too (e.g. spurious-scenes:train_size=48,val_per_group=4,test_per_group=4 for a trial) but then not
# --quick; the environment variable PRETRAIN_DATA (default scenes-pretrain) sets the pretraining data the same way.
set -euo pipefail

dataset="spurious-digits"
quick=0
seeds="0,1,2"
out=""
targets="random,random-other"
methods="pgd-l2,pgd-linf,pgd-l0,cfe-l2,pcfe-l0"
limit=""
jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --data) dataset="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --seeds) seeds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --targets) targets="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --limit) limit="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,47p' "$0"; exit 0 ;;
    *) echo "five_methods.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/study_data.sh"
study_data five_methods.sh
LFP="${LFP:-lfp}"
IFS=, read -r -a seed_list <<< "$seeds"
IFS=, read -r -a target_list <<< "$targets"
IFS=, read -r -a method_list <<< "$methods"
if [ -n "$limit" ] && ! [[ "$limit" =~ ^[1-9][0-9]*$ ]]; then
  echo "five_methods.sh: --limit takes a positive number of images, got $limit" >&2; exit 2
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "five_methods.sh: --jobs takes a positive number of seeds to run at once, got $jobs" >&2; exit 2
fi
lim=()
sfx=""
if [ -n "$limit" ]; then lim=(--limit "$limit"); sfx="-limit$limit"; fi

source "$(dirname "$0")/stage.sh"
# the methods, longest perturbation first, so that the last jobs of --jobs are short ones (one seed at one thread on
# spurious-scenes: pcfe-l0 25 min, pgd-l0 10, cfe-l2 9, pgd-linf and pgd-l2 3); any other method after them
longest_first() {
  local m known=" pcfe-l0 pgd-l0 cfe-l2 pgd-linf pgd-l2 "
  for m in $known; do [[ " $* " == *" $m "* ]] && echo "$m"; done
  for m in "$@"; do [[ "$known" == *" $m "* ]] || echo "$m"; done
  return 0
}

start=$(date +%s)
# spurious-scenes: the one pretrained network every model starts from, made before any seed (so --jobs makes it once)
if [ "$scenes" = 1 ]; then pretrain_stage; fi
if [ "$jobs" -gt 1 ]; then
  # $jobs processes at a time (this script with --jobs 1): first each seed's models, then every (method, rule,
  # seed) arm on its own, so no core idles while one seed finishes its arms; then the tables below, once
  pool_setup
  for s in "${seed_list[@]}"; do
    pool_start "seed $s" "$out/logs/seed$s.log" env FIVE_METHODS_ONE_SEED=1 FIVE_METHODS_PART=models \
      bash "$0" "${args[@]}" --seeds "$s" --targets "$targets" --methods "$methods"
  done
  failed=0
  pool_finish || failed=1
  for m in $(longest_first "${method_list[@]}"); do
    for t in "${target_list[@]}"; do
      for s in "${seed_list[@]}"; do
        # an arm needs its seed's standard model
        [[ " ${pool_failed[*]:-} " == *" seed $s "* ]] && continue
        pool_start "seed $s, $t$sfx, $m" "$out/logs/seed$s-$t$sfx-$m.log" env FIVE_METHODS_ONE_SEED=1 \
          FIVE_METHODS_PART=arms bash "$0" "${args[@]}" --seeds "$s" --targets "$t" --methods "$m"
      done
    done
  done
  pool_finish || failed=1
  [ "$failed" = 0 ] || exit 1
  seed_runs=()
else
  seed_runs=("${seed_list[@]}")
fi
for s in "${seed_runs[@]}"; do
  d="$out/s$s"
  mkdir -p "$d"
  if [ "${FIVE_METHODS_PART:-all}" != arms ]; then
    stage "s$s/train" "$d/std.pt" "$LFP" train --data "$data" "${model_args[@]}" --seed "$s" --out "$d/std.pt" --resume --quiet
    stage "s$s/eval-std" "$d/eval_std.json" "$LFP" eval --in "$d/std.pt" --out "$d/eval_std.json" --quiet
    if [ "$scenes" = 1 ]; then
      stage "s$s/balanced" "$d/balanced.pt" "$LFP" train --data "$data" "${model_args[@]}" --balance groups --seed "$s" \
        --out "$d/balanced.pt" --resume --quiet
      stage "s$s/eval-balanced" "$d/eval_balanced.json" "$LFP" eval --in "$d/balanced.pt" --out "$d/eval_balanced.json" --quiet
      explain_stage "s$s/saliency-std" "$d/std.pt" "$d/saliency_std" "$s"
      explain_stage "s$s/saliency-balanced" "$d/balanced.pt" "$d/saliency_balanced" "$s"
    fi
  fi
  [ "${FIVE_METHODS_PART:-all}" = models ] && continue
  for t in "${target_list[@]}"; do
    mkdir -p "$d/$t$sfx"
    for m in "${method_list[@]}"; do
      stage "s$s/$t$sfx/$m/perturb" "$d/$t$sfx/$m.h5" "$LFP" perturb --method "$m" --targets "$t" --in "$d/std.pt" --seed "$s" \
        --out "$d/$t$sfx/$m.h5" --resume --quiet "${lim[@]}"
      stage "s$s/$t$sfx/$m/retrain" "$d/$t$sfx/$m.pt" "$LFP" retrain --in "$d/$t$sfx/$m.h5" "${retrain_args[@]}" --seed "$s" \
        --out "$d/$t$sfx/$m.pt" --resume --quiet
      stage "s$s/$t$sfx/$m/eval" "$d/$t$sfx/eval_$m.json" "$LFP" eval --in "$d/$t$sfx/$m.pt" --out "$d/$t$sfx/eval_$m.json" --quiet
      if [ "$scenes" = 1 ]; then explain_stage "s$s/$t$sfx/$m/saliency" "$d/$t$sfx/$m.pt" "$d/$t$sfx/saliency_$m" "$s"; fi
    done
  done
done

# a seed run by --jobs leaves the tables to the script that started it
if [ "${FIVE_METHODS_ONE_SEED:-0}" = 1 ]; then exit 0; fi

# the tables: grouping comes from the eval reports' provenance (method, target rule, density, data, settings)
evals=()
for s in "${seed_list[@]}"; do
  evals+=("$out/s$s/eval_std.json")
  if [ "$scenes" = 1 ]; then evals+=("$out/s$s/eval_balanced.json"); fi
  for t in "${target_list[@]}"; do
    for m in "${method_list[@]}"; do evals+=("$out/s$s/$t$sfx/eval_$m.json"); done
  done
done
# spurious-scenes: every column against the standard model, paired by seed (the column that holds its eval reports)
base_of() { baseline_args "$1" "$out/s${seed_list[0]}/eval_std.json" "${@:2}"; }
base_of "$out/tables$sfx.json" "${evals[@]}"
"$LFP" report "${evals[@]}" "${base[@]}" --out "$out/tables$sfx.md" --force > /dev/null
"$LFP" report "${evals[@]}" "${base[@]}" --out "$out/tables$sfx.csv" --force > /dev/null
for t in "${target_list[@]}"; do
  # one target rule at a time, the paper's layout (the standard model has no target rule, so it stays)
  base_of "$out/tables_$t$sfx.json" "${evals[@]}" --where "targets=$t"
  "$LFP" report "${evals[@]}" --where "targets=$t" "${base[@]}" --out "$out/tables_$t$sfx.md" --force > /dev/null
  ckpts=()
  for s in "${seed_list[@]}"; do
    ckpts+=("$out/s$s/std.pt")
    if [ "$scenes" = 1 ]; then ckpts+=("$out/s$s/balanced.pt"); fi
    for m in "${method_list[@]}"; do ckpts+=("$out/s$s/$t$sfx/$m.pt"); done
  done
  "$LFP" report --curves "${ckpts[@]}" --out "$out/curves_$t$sfx.png" --title "${data%%:*} ($data), $t targets" --force > /dev/null
  if [ "$scenes" = 1 ]; then
    pairs=()
    for s in "${seed_list[@]}"; do
      pairs+=(--pair "$out/s$s/eval_std.json" "$out/s$s/saliency_std.json")
      pairs+=(--pair "$out/s$s/eval_balanced.json" "$out/s$s/saliency_balanced.json")
      for m in "${method_list[@]}"; do pairs+=(--pair "$out/s$s/$t$sfx/eval_$m.json" "$out/s$s/$t$sfx/saliency_$m.json"); done
    done
    "$PYTHON" "$(dirname "$0")/study_tables.py" attribution "$out/tables_$t$sfx.json" --out "$out/attribution_$t$sfx.md" \
      --title "Attribution share on the object, $data test images, $t targets" "${pairs[@]}"
  fi
done
for t in "${target_list[@]}"; do
  echo
  echo "== $t targets =="
  cat "$out/tables_$t$sfx.md"
  if [ "$scenes" = 1 ]; then echo; cat "$out/attribution_$t$sfx.md"; fi
done
echo
if [ "$scenes" = 1 ]; then
  echo "tables: $out/tables.md (all), $out/tables_<rule>.md, $out/tables.csv; attribution: $out/attribution_<rule>.md; curves: $out/curves_<rule>.png; stage times: $out/times.tsv"
else
  echo "tables: $out/tables.md (all), $out/tables_<rule>.md, $out/tables.csv; curves: $out/curves_<rule>.png; stage times: $out/times.tsv"
fi
echo "this invocation: $(( $(date +%s) - start )) s (stages skipped because their outputs existed cost nothing)"
