#!/usr/bin/env bash
# The calibration of the spurious-scenes testbed (docs/testbed.md): no perturbation method runs here. One model is
# pretrained on scenes-pretrain (seed 0, shared, as ImageNet weights are), then for every seed three models are
# trained on spurious-scenes with lfp's defaults and evaluated:
#   std  standard fine-tuning from the pretrained start (--weights DIR/pretrain.pt): the column "Original"
#   bal  the group-balanced reference: the same, with --balance groups (minibatches drawn with the groups equal)
#   scr  the same standard training from scratch (no --weights)
# Targets (fixed before the first run): std test accuracy >= 85% and test worst-group accuracy 40-75% with a seed
# std <= 5 points; bal worst-group >= 80%; scr worst-group clearly below std.
#
#   bash examples/calibrate_scenes.sh [--seeds 0,1,2,3,4] [--out DIR] [--data SPEC] [--pretrain-data SPEC]
#
# Resumable as examples/five_methods.sh is (a stage whose output exists is skipped); stage times in DIR/times.tsv.
# Prints the tables (lfp report, worst-group and accuracy per split) and writes them to DIR/calibration.md.
set -euo pipefail

seeds="0,1,2,3,4"
out="calibrate-scenes"
data="spurious-scenes"
pretrain_data="scenes-pretrain"
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --pretrain-data) pretrain_data="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "calibrate_scenes.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
LFP="${LFP:-lfp}"
IFS=, read -r -a seed_list <<< "$seeds"
mkdir -p "$out"
source "$(dirname "$0")/stage.sh"

stage pretrain "$out/pretrain.pt" "$LFP" train --data "$pretrain_data" --seed 0 --out "$out/pretrain.pt" --resume --quiet
evals=()
for s in "${seed_list[@]}"; do
  for kind in std bal scr; do
    case "$kind" in
      std) init=(--weights "$out/pretrain.pt") ;;
      bal) init=(--weights "$out/pretrain.pt" --balance groups) ;;
      scr) init=() ;;
    esac
    stage "s$s/$kind" "$out/${kind}_$s.pt" "$LFP" train --data "$data" --seed "$s" "${init[@]}" \
      --out "$out/${kind}_$s.pt" --resume --quiet
    stage "s$s/eval-$kind" "$out/eval_${kind}_$s.json" "$LFP" eval --in "$out/${kind}_$s.pt" \
      --out "$out/eval_${kind}_$s.json" --quiet
    evals+=("$out/eval_${kind}_$s.json")
  done
done
"$LFP" report "${evals[@]}" --split train,val,test --out "$out/calibration.md" --force > /dev/null
cat "$out/calibration.md"
