# Shared by examples/five_methods.sh and examples/pcfe_ablations.sh (sourced, not run): which data the study runs on,
# and the stages that spurious-scenes adds (the pretrained start, saliency on the masks, the baseline column).
#
# study_data SCRIPT: from $dataset (--data) and $quick, set data (the spec every model is trained on), out (DIR,
# unless given), scenes (1 for spurious-scenes), model_args (how a standard model starts), retrain_args (how a
# retrained one starts), pretrain_data and PYTHON (for examples/study_tables.py). Bad input: one line, exit 2.
study_data() {
  local script="$1" name="${dataset%%:*}"
  case "$name" in
    spurious-digits|spurious-scenes) ;;
    *) echo "$script: --data takes spurious-digits or spurious-scenes (optionally with :key=value,...), got $dataset" >&2; exit 2 ;;
  esac
  if [ "$quick" = 1 ] && [ "$name" != "$dataset" ]; then
    echo "$script: --quick picks the data's parameters itself; give --data $name with --quick, or $dataset without it" >&2
    exit 2
  fi
  local q=""
  if [ "$quick" = 1 ]; then q="-quick"; fi
  scenes=0
  model_args=(--arch small-cnn)
  retrain_args=()
  if [ "$name" = spurious-scenes ]; then
    scenes=1
    out="${out:-five-methods-scenes$q}"
    # the testbed's own architecture and training settings, from the one pretrained network (copied but its head)
    model_args=(--weights "$out/pretrain.pt")
    # the fresh model starts from the same pretrained file as the standard model (refused if it cannot be found)
    retrain_args=(--init pretrained)
  else
    out="${out:-five-methods$q}"
  fi
  if [ "$quick" = 1 ]; then
    if [ "$scenes" = 1 ]; then data="spurious-scenes:train_size=1200"; else data="spurious-digits:train_copies=1"; fi
  else
    data="$dataset"
  fi
  pretrain_data="${PRETRAIN_DATA:-scenes-pretrain}"
  PYTHON="${PYTHON:-python3}"
}

# pretrain_stage: DIR/pretrain.pt, the pretraining source's model (seed 0), once for every seed
pretrain_stage() {
  stage "pretrain" "$out/pretrain.pt" "$LFP" train --data "$pretrain_data" --seed 0 --out "$out/pretrain.pt" --resume --quiet
}

# explain STEM ARGS...: lfp saliency ARGS with the maps in STEM.h5 and its summary in STEM.json; the summary is the
# stage's output, so a run cut off between the two is redone whole (--force replaces the maps it left)
explain() {
  local stem="$1"; shift
  "$LFP" saliency "$@" --out "$stem.h5" --force --json --quiet > "$stem.json.part" && mv "$stem.json.part" "$stem.json"
}

# explain_stage NAME MODEL STEM SEED: attribution of MODEL on 512 test images drawn with SEED (the same images for
# every model of a seed), on the data's own masks
explain_stage() {
  local name="$1" model="$2" stem="$3" seed="$4"
  stage "$name" "$stem.json" explain "$stem" --in "$model" --data "$data" --split test --n 512 --seed "$seed"
}

# baseline_args JSON EVAL REPORT_ARGS...: sets base to the --baseline option naming the column of lfp report
# REPORT_ARGS that holds eval report EVAL (the standard model), writing that report as JSON first; empty for
# spurious-digits (whose tables stay as they were)
baseline_args() {
  local json="$1" evaluation="$2"; shift 2
  base=()
  if [ "$scenes" = 1 ]; then
    "$LFP" report "$@" --format json --out "$json" --force > /dev/null
    base=(--baseline "$("$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/study_tables.py" column "$json" "$evaluation")")
  fi
}
