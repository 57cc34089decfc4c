#!/usr/bin/env bash
# What carries p-CFE's worst-group effect, one ingredient at a time (docs/study.md): each row changes one thing of
# the default pcfe-l0 arm of examples/five_methods.sh, under random targets (the paper's rule on WaterBirds), for
# every seed, and is reported as mean (std) over seeds beside the default, pgd-l2 and the standard model.
#
#   bash examples/pcfe_ablations.sh [--data spurious-digits|spurious-scenes] [--quick] [--seeds 0,1,2] [--out DIR]
#                                   [--rows ROW,...] [--limit N] [--jobs J]
#
# Run it on the DIR of examples/five_methods.sh (the same --data, --quick and --seeds): it reuses that script's standard
# models and its default pcfe-l0 and pgd-l2 arms, and makes them first if they are missing. ROW is a group or one
# row of it (default: every row; rows run in the order given, each for every seed before the next row):
#   density   no-density (plain S-CFE), gb-kde (a pixel KDE fitted group-balanced), feature-kde (a KDE in the
#             model's feature space), vae (per-class VAEs, the paper code's theta = 2 and 4 search steps)
#   sparsity  beta0.1, beta0.001 (the default is 0.01), l0-ball100 (an l0 ball of 100 changed values)
#   training  select-wga (--select val-worst-group), epochs30 (--epochs 30), paper-code (the paper code's recipe:
#             SGD, 113 epochs): the retrained pcfe-l0 model and, for comparison, the standard model and pgd-l2's
# --limit N: as five_methods.sh --limit (perturb the first N training images; outputs under DIR/sS/ablations-limitN,
# compared with DIR/sS/random-limitN). Resumable like five_methods.sh; stage times go to DIR/times.tsv.
# --jobs J: as five_methods.sh --jobs, J processes at a time (OMP_NUM_THREADS = cores / J unless set): first each
# seed's standard model and default arms, then every (row, seed) in the order given; logs in DIR/logs/.
#
# --data spurious-scenes (as five_methods.sh, whose DIR five-methods-scenes it shares, and its PRETRAIN_DATA): every
# model trained here starts from DIR/pretrain.pt (made first if missing), the standard models of the training rows
# with --weights DIR/pretrain.pt, every retrained model with --init pretrained; every model's attribution share on
# the object (lfp saliency, 512 test images) goes to DIR/attribution_ablations.md, and the table gets the paired
# differences from the standard model (lfp report --baseline). Every row applies to spurious-scenes. Two read
# differently there: l0-ball100 allows 100 of 3,072 values (3 x 32 x 32; of 2,352 on spurious-digits), and
# paper-code keeps the testbed's optimizer (its defaults already are SGD lr 1e-3, momentum 0.9, weight decay 1e-4)
# and changes batch 64 to 108 and 20 epochs to 113, so its standard model costs 5.6 times the default's.
set -euo pipefail

dataset="spurious-digits"
quick=0
seeds="0,1,2"
out=""
rows="density,sparsity,training"
limit=""
jobs=1
declare -A ROW_GROUPS=([density]="no-density,gb-kde,feature-kde,vae" [sparsity]="beta0.1,beta0.001,l0-ball100"
                   [training]="select-wga,epochs30,paper-code")
ALL_ROWS="no-density gb-kde feature-kde vae beta0.1 beta0.001 l0-ball100 select-wga epochs30 paper-code"
while [ $# -gt 0 ]; do
  case "$1" in
    --data) dataset="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --seeds) seeds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --rows) rows="$2"; shift 2 ;;
    --limit) limit="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "pcfe_ablations.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/study_data.sh"
study_data pcfe_ablations.sh
LFP="${LFP:-lfp}"
IFS=, read -r -a seed_list <<< "$seeds"
if [ -n "$limit" ] && ! [[ "$limit" =~ ^[1-9][0-9]*$ ]]; then
  echo "pcfe_ablations.sh: --limit takes a positive number of images, got $limit" >&2; exit 2
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "pcfe_ablations.sh: --jobs takes a positive number of processes to run at once, got $jobs" >&2; exit 2
fi
lim=()
sfx=""
if [ -n "$limit" ]; then lim=(--limit "$limit"); sfx="-limit$limit"; fi
# the rows asked for, groups expanded, in the order given
row_list=()
IFS=, read -r -a asked <<< "$rows"
for r in "${asked[@]}"; do
  if [ -n "${ROW_GROUPS[$r]:-}" ]; then IFS=, read -r -a sub <<< "${ROW_GROUPS[$r]}"; row_list+=("${sub[@]}")
  elif [[ " $ALL_ROWS " == *" $r "* ]]; then row_list+=("$r")
  else echo "pcfe_ablations.sh: unknown row $r (rows: density, sparsity, training or one of: $ALL_ROWS)" >&2; exit 2
  fi
done
source "$(dirname "$0")/stage.sh"

# perturb NAME ARGS...: a pcfe-l0 variant under random targets, retrained and evaluated
variant() {
  local s="$1" name="$2"; shift 2
  local d="$out/s$s" a="$out/s$s/ablations$sfx"
  stage "s$s/ablations$sfx/$name/perturb" "$a/$name.h5" "$LFP" perturb --method pcfe-l0 --targets random --in "$d/std.pt" \
    --seed "$s" --out "$a/$name.h5" --resume --quiet "${lim[@]}" "$@"
  stage "s$s/ablations$sfx/$name/retrain" "$a/$name.pt" "$LFP" retrain --in "$a/$name.h5" "${retrain_args[@]}" --seed "$s" \
    --out "$a/$name.pt" --resume --quiet
  stage "s$s/ablations$sfx/$name/eval" "$a/eval_$name.json" "$LFP" eval --in "$a/$name.pt" --out "$a/eval_$name.json" --quiet
  if [ "$scenes" = 1 ]; then explain_stage "s$s/ablations$sfx/$name/saliency" "$a/$name.pt" "$a/saliency_$name" "$s"; fi
}

# retrain_as NAME FLAGS...: the default pcfe-l0 and pgd-l2 sets retrained, and the standard model trained, with FLAGS
retrain_as() {
  local s="$1" name="$2"; shift 2
  local d="$out/s$s" a="$out/s$s/ablations$sfx"
  stage "s$s/ablations$sfx/std-$name/train" "$a/std-$name.pt" "$LFP" train --data "$data" "${model_args[@]}" --seed "$s" \
    --out "$a/std-$name.pt" --resume --quiet "$@"
  stage "s$s/ablations$sfx/std-$name/eval" "$a/eval_std-$name.json" "$LFP" eval --in "$a/std-$name.pt" --out "$a/eval_std-$name.json" --quiet
  if [ "$scenes" = 1 ]; then explain_stage "s$s/ablations$sfx/std-$name/saliency" "$a/std-$name.pt" "$a/saliency_std-$name" "$s"; fi
  for m in pcfe-l0 pgd-l2; do
    stage "s$s/ablations$sfx/$m-$name/retrain" "$a/$m-$name.pt" "$LFP" retrain --in "$d/random$sfx/$m.h5" "${retrain_args[@]}" \
      --seed "$s" --out "$a/$m-$name.pt" --resume --quiet "$@"
    stage "s$s/ablations$sfx/$m-$name/eval" "$a/eval_$m-$name.json" "$LFP" eval --in "$a/$m-$name.pt" --out "$a/eval_$m-$name.json" --quiet
    if [ "$scenes" = 1 ]; then explain_stage "s$s/ablations$sfx/$m-$name/saliency" "$a/$m-$name.pt" "$a/saliency_$m-$name" "$s"; fi
  done
}

start=$(date +%s)
if [ "$scenes" = 1 ]; then pretrain_stage; fi
part="${ABLATIONS_PART:-all}"
if [ "$jobs" -gt 1 ]; then
  # $jobs processes at a time (this script with --jobs 1): each seed's models, then every (row, seed); then the tables
  pool_setup
  for s in "${seed_list[@]}"; do
    pool_start "seed $s" "$out/logs/ablations$sfx-seed$s.log" env ABLATIONS_PART=models bash "$0" "${args[@]}" \
      --seeds "$s" --rows "$rows"
  done
  failed=0
  pool_finish || failed=1
  for row in "${row_list[@]}"; do
    for s in "${seed_list[@]}"; do
      [[ " ${pool_failed[*]:-} " == *" seed $s "* ]] && continue
      pool_start "seed $s, $row" "$out/logs/ablations$sfx-seed$s-$row.log" env ABLATIONS_PART=rows bash "$0" "${args[@]}" \
        --seeds "$s" --rows "$row"
    done
  done
  pool_finish || failed=1
  [ "$failed" = 0 ] || exit 1
  part=tables
fi
for s in "${seed_list[@]}"; do
  [ "$part" = all ] || [ "$part" = models ] || continue
  d="$out/s$s"
  mkdir -p "$d/random$sfx" "$d/ablations$sfx"
  # what five_methods.sh makes (skipped when it is there): the standard model and the default arms compared against
  stage "s$s/train" "$d/std.pt" "$LFP" train --data "$data" "${model_args[@]}" --seed "$s" --out "$d/std.pt" --resume --quiet
  stage "s$s/eval-std" "$d/eval_std.json" "$LFP" eval --in "$d/std.pt" --out "$d/eval_std.json" --quiet
  if [ "$scenes" = 1 ]; then explain_stage "s$s/saliency-std" "$d/std.pt" "$d/saliency_std" "$s"; fi
  for m in pgd-l2 pcfe-l0; do
    stage "s$s/random$sfx/$m/perturb" "$d/random$sfx/$m.h5" "$LFP" perturb --method "$m" --targets random --in "$d/std.pt" \
      --seed "$s" --out "$d/random$sfx/$m.h5" --resume --quiet "${lim[@]}"
    stage "s$s/random$sfx/$m/retrain" "$d/random$sfx/$m.pt" "$LFP" retrain --in "$d/random$sfx/$m.h5" "${retrain_args[@]}" --seed "$s" \
      --out "$d/random$sfx/$m.pt" --resume --quiet
    stage "s$s/random$sfx/$m/eval" "$d/random$sfx/eval_$m.json" "$LFP" eval --in "$d/random$sfx/$m.pt" --out "$d/random$sfx/eval_$m.json" --quiet
    if [ "$scenes" = 1 ]; then explain_stage "s$s/random$sfx/$m/saliency" "$d/random$sfx/$m.pt" "$d/random$sfx/saliency_$m" "$s"; fi
  done
done
for row in "${row_list[@]}"; do
  [ "$part" = all ] || [ "$part" = rows ] || continue
  for s in "${seed_list[@]}"; do
    d="$out/s$s"
    a="$d/ablations$sfx"
    mkdir -p "$a"
    case "$row" in
      no-density) variant "$s" no-density --density none ;;
      gb-kde)
        # a pixel KDE fitted on equal numbers of each (label, background) group, as perturb fits its default (300 per class)
        stage "s$s/ablations$sfx/gb-kde/density" "$a/density-gb-kde.h5" "$LFP" density --kind kde --fit-on group-balanced \
          -p max_points=300 --in "$d/std.pt" --seed "$s" --out "$a/density-gb-kde.h5" --quiet
        variant "$s" gb-kde --density "$a/density-gb-kde.h5" ;;
      feature-kde) variant "$s" feature-kde --density feature-kde ;;
      vae)
        # the paper code's plausibility term: one VAE per class on that class's clean images, theta = 2, 4 search steps
        stage "s$s/ablations$sfx/vae/density" "$a/density-vae.h5" "$LFP" density --kind vae --in "$d/std.pt" --seed "$s" \
          --out "$a/density-vae.h5" --resume --quiet
        variant "$s" vae --density "$a/density-vae.h5" --tau 2 --search-steps 4 ;;
      beta0.1) variant "$s" beta0.1 --beta 0.1 ;;
      beta0.001) variant "$s" beta0.001 --beta 0.001 ;;
      l0-ball100) variant "$s" l0-ball100 --prox l0-ball --max-changed 100 ;;
      select-wga) retrain_as "$s" select-wga --select val-worst-group ;;
      epochs30) retrain_as "$s" epochs30 --epochs 30 ;;
      paper-code) retrain_as "$s" paper-code --recipe paper-code ;;
    esac
  done
done

# a process started by --jobs leaves the tables to the one that started it
if [ "$part" = models ] || [ "$part" = rows ]; then exit 0; fi
shopt -s nullglob
evals=()
for s in "${seed_list[@]}"; do
  evals+=("$out/s$s/eval_std.json" "$out/s$s/random$sfx/eval_pgd-l2.json" "$out/s$s/random$sfx/eval_pcfe-l0.json" "$out/s$s"/ablations$sfx/eval_*.json)
done
# spurious-scenes: every row against the standard model, paired by seed (the column that holds its eval reports)
baseline_args "$out/ablations$sfx.json" "$out/s${seed_list[0]}/eval_std.json" "${evals[@]}" --layout long --split train,test
"$LFP" report "${evals[@]}" --layout long --split train,test "${base[@]}" --out "$out/ablations$sfx.md" --force > /dev/null
"$LFP" report "${evals[@]}" --layout long --split train,test "${base[@]}" --out "$out/ablations$sfx.csv" --force > /dev/null
if [ "$scenes" = 1 ]; then
  # every model evaluated above has its saliency summary beside its eval report: eval_NAME.json, saliency_NAME.json
  pairs=()
  for e in "${evals[@]}"; do pairs+=(--pair "$e" "$(dirname "$e")/saliency_$(basename "$e" .json | sed 's/^eval_//').json"); done
  "$PYTHON" "$(dirname "$0")/study_tables.py" attribution "$out/ablations$sfx.json" --out "$out/attribution_ablations$sfx.md" \
    --title "Attribution share on the object, $data test images, p-CFE ablations (random targets)" "${pairs[@]}"
fi
echo
cat "$out/ablations$sfx.md"
if [ "$scenes" = 1 ]; then echo; cat "$out/attribution_ablations$sfx.md"; fi
echo
if [ "$scenes" = 1 ]; then
  echo "ablation rows: $out/ablations.md, $out/ablations.csv; attribution: $out/attribution_ablations.md; stage times: $out/times.tsv"
else
  echo "ablation rows: $out/ablations.md, $out/ablations.csv; stage times: $out/times.tsv"
fi
echo "this invocation: $(( $(date +%s) - start )) s (stages skipped because their outputs existed cost nothing)"
