# Shared by examples/paper_*.sh (sourced, not run): one of the paper's experiments, end to end, for several seeds.
#
# A dataset script sets these, then calls `paper_main "$@"`:
#   NAME         data spec name (waterbirds, spuco-dogs, mnist, fmnist, cifar10): the spec is NAME:root=ROOT
#   TITLE        what the experiment is, for --help
#   ROOT_ENV     environment variable that may hold the root (e.g. WATERBIRDS_ROOT)
#   ROOT_HINT    what the root folder holds, for the message when it is missing
#   CONFIGS      folder of the presets, examples/configs/NAME
#   TARGETS      default target rules, comma-separated (random; random,deterministic for Appendix B)
#   WEIGHTS      1 when the network starts from torchvision's ImageNet ResNet-50 (--weights FILE|NAME)
#   CURVES       1 to end with `lfp report --curves` (training curves: the appendix's Figures 13-21)
#   CODE_DATA_OPTS  optional: ",key=value,..." appended to the data spec in the paper-code variant
#
# Per seed S (folder OUT/sS): train the standard model, evaluate it; fit the plausibility density once; for every
# target rule T and method M: perturb the training split, retrain a fresh model on it, evaluate it; Grad-CAM maps of
# the standard and the retrained models; at the end `lfp report` over every eval report. Every command takes the
# preset of its step (CONFIGS/VARIANT/STEP.yaml) and the flags that name this run's files. A step whose output
# exists is skipped, an interrupted one is finished with --resume: run the script again to continue.

paper_usage() {
  cat <<EOF
$TITLE

usage: $0 [--dry-run] [--root DIR] [--variant paper-text|paper-code] [--seeds 0,1,2,3,4]
          [--targets $TARGETS] [--methods pgd-l2,pgd-linf,pgd-l0,cfe-l2,pcfe-l0]
          [--out DIR] [--device auto|cpu|cuda|cuda:N]$( [ "$WEIGHTS" = 1 ] && printf '%s' " [--weights FILE|NAME]" )

  --dry-run   print the lfp commands, one a line, and run nothing (no root or file is needed)
  --root      the data's folder (default: \$$ROOT_ENV): $ROOT_HINT
  --variant   the presets: paper-text (the paper's text) or paper-code (its public code); default paper-text
  --out       where every file goes (default: paper-$NAME-VARIANT)
EOF
  if [ "$WEIGHTS" = 1 ]; then
    cat <<EOF
  --weights   torchvision's ImageNet ResNet-50: a file (default: \$LFP_RESNET50_WEIGHTS, else
              \$TORCH_HOME/hub/checkpoints/resnet50-0676ba61.pth), or the name IMAGENET1K_V1 (the
              paper's), which lfp fetches into torch's hub cache once when it is not there
EOF
  fi
  echo "Presets: $CONFIGS/VARIANT/*.yaml (README.md, section Paper presets). Steps whose output exists are skipped: rerun to continue."
}

paper_die() {
  echo "error: $*" >&2
  exit 2
}

# one argument, shell-quoted where it needs it
paper_quote_one() {
  case "$1" in
    "" ) printf "''" ;;
    *[!A-Za-z0-9_./:=,+@%-]* ) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    * ) printf '%s' "$1" ;;
  esac
}

paper_quote() {
  local first=1 a
  for a in "$@"; do
    [ "$first" = 1 ] || printf ' '
    first=0
    paper_quote_one "$a"
  done
  printf '\n'
}

# step OUTPUT lfp SUBCOMMAND ARGS...: print it (--dry-run), or run it unless OUTPUT exists (resuming a kept run)
step() {
  local output="$1"
  shift
  shift # the literal word lfp
  if [ "$DRY" = 1 ]; then
    paper_quote lfp "$@"
    return 0
  fi
  if [ -n "$output" ] && [ -e "$output" ]; then
    echo "skip: $output exists" >&2
    return 0
  fi
  local extra=()
  if [ -n "$output" ] && [ -d "$output.resume" ]; then
    extra=(--resume)
  fi
  echo "+ $(paper_quote lfp "$@" ${extra[@]+"${extra[@]}"})" >&2
  "$LFP" "$@" ${extra[@]+"${extra[@]}"}
}

paper_main() {
  DRY=0
  local root="${!ROOT_ENV:-}" variant="paper-text" seeds="0,1,2,3,4" targets="$TARGETS"
  local methods="pgd-l2,pgd-linf,pgd-l0,cfe-l2,pcfe-l0" out="" device="auto" weights="${LFP_RESNET50_WEIGHTS:-}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY=1; shift ;;
      --root) root="${2:?--root needs a folder}"; shift 2 ;;
      --variant) variant="${2:?--variant needs paper-text or paper-code}"; shift 2 ;;
      --seeds) seeds="${2:?--seeds needs a list such as 0,1,2,3,4}"; shift 2 ;;
      --targets) targets="${2:?--targets needs a list}"; shift 2 ;;
      --methods) methods="${2:?--methods needs a list}"; shift 2 ;;
      --out) out="${2:?--out needs a folder}"; shift 2 ;;
      --device) device="${2:?--device needs a device}"; shift 2 ;;
      --weights) weights="${2:?--weights needs a file or a name such as IMAGENET1K_V1}"; shift 2 ;;
      -h|--help) paper_usage; exit 0 ;;
      *) paper_die "unknown option '$1' (see $0 --help)" ;;
    esac
  done
  local cfg="$CONFIGS/$variant"
  [ -d "$cfg" ] || paper_die "no presets for variant '$variant' in $CONFIGS (choose paper-text or paper-code)"
  out="${out:-paper-$NAME-$variant}"
  LFP="${LFP:-lfp}"
  if [ "$WEIGHTS" = 1 ] && [ -z "$weights" ]; then
    weights="${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}/hub/checkpoints/resnet50-0676ba61.pth"
  fi
  if [ "$DRY" = 1 ]; then
    echo "# dry run of $0 ($variant presets): every lfp command, one a line; nothing is run"
    if [ -z "$root" ]; then
      root="/path/to/$NAME"
      echo "# no --root and no \$$ROOT_ENV: the commands show $root"
    fi
  else
    [ -n "$root" ] || paper_die "no data root: give --root DIR or set $ROOT_ENV ($ROOT_HINT); to fetch the data: lfp data $NAME:root=DIR --download"
    [ -d "$root" ] || paper_die "data root $root is not a folder: give --root DIR or set $ROOT_ENV ($ROOT_HINT)"
    command -v "$LFP" > /dev/null || paper_die "$LFP is not on PATH (install lfp, or set LFP=/path/to/lfp)"
    # a name (IMAGENET1K_V1) is lfp's to resolve and fetch; a file must be there
    if [ "$WEIGHTS" = 1 ] && [[ ! "$weights" =~ ^[A-Z][A-Z0-9_]*$ ]] && [ ! -f "$weights" ]; then
      paper_die "ResNet-50 weights $weights not found: give --weights IMAGENET1K_V1 (lfp fetches torchvision's resnet50-0676ba61.pth, ImageNet V1, the paper's setup, into torch's hub cache once), or get that file where there is network access (https://download.pytorch.org/models/resnet50-0676ba61.pth) and give --weights FILE or set LFP_RESNET50_WEIGHTS"
    fi
    mkdir -p "$out"
  fi
  local data="$NAME:root=$root" cache="$out/$NAME.h5"
  # the paper-code variant's data options, where its scripts read the data differently (e.g. SpuCo's class order)
  [ "$variant" = paper-code ] && data="$data${CODE_DATA_OPTS:-}"
  local IFS_SAVE="$IFS"
  IFS=, read -r -a seed_list <<< "$seeds"
  IFS=, read -r -a target_list <<< "$targets"
  IFS=, read -r -a method_list <<< "$methods"
  IFS="$IFS_SAVE"
  local w=()
  [ "$WEIGHTS" = 1 ] && w=(--weights "$weights")
  local evals=() models=()

  # the images decoded once into a uint8 HDF5 file that every later command reads
  step "$cache" lfp data "$data" --out "$cache"
  for s in "${seed_list[@]}"; do
    local d="$out/s$s"
    [ "$DRY" = 1 ] || mkdir -p "$d"
    step "$d/standard.pt" lfp train --config "$cfg/train.yaml" --data "$cache" ${w[@]+"${w[@]}"} --seed "$s" --device "$device" --out "$d/standard.pt"
    step "$d/eval_standard.json" lfp eval --config "$cfg/eval.yaml" --in "$d/standard.pt" --device "$device" --out "$d/eval_standard.json"
    evals+=("$d/eval_standard.json")
    models+=("$d/standard.pt")
    case ",$methods," in
      *,pcfe-l0,*) step "$d/density.h5" lfp density --config "$cfg/density.yaml" --in "$d/standard.pt" --seed "$s" --device "$device" --out "$d/density.h5" ;;
    esac
    for t in "${target_list[@]}"; do
      [ "$DRY" = 1 ] || mkdir -p "$d/$t"
      local maps=(--in "$d/standard.pt")
      for m in "${method_list[@]}"; do
        local dens=()
        [ "$m" = pcfe-l0 ] && dens=(--density "$d/density.h5")
        step "$d/$t/$m.h5" lfp perturb --config "$cfg/perturb-$m.yaml" --in "$d/standard.pt" --targets "$t" ${dens[@]+"${dens[@]}"} --seed "$s" --device "$device" --out "$d/$t/$m.h5"
        step "$d/$t/$m.pt" lfp retrain --config "$cfg/retrain.yaml" --in "$d/$t/$m.h5" --seed "$s" --device "$device" --out "$d/$t/$m.pt"
        step "$d/$t/eval_$m.json" lfp eval --config "$cfg/eval.yaml" --in "$d/$t/$m.pt" --device "$device" --out "$d/$t/eval_$m.json"
        evals+=("$d/$t/eval_$m.json")
        models+=("$d/$t/$m.pt")
        maps+=(--in "$d/$t/$m.pt")
      done
      step "$d/$t/saliency.h5" lfp saliency --config "$cfg/saliency.yaml" "${maps[@]}" --seed "$s" --device "$device" --out "$d/$t/saliency.h5" --png "$d/$t/saliency.png"
    done
  done
  step "$out/report.md" lfp report "${evals[@]}" --format md --out "$out/report.md"
  step "$out/report.csv" lfp report "${evals[@]}" --format csv --out "$out/report.csv"
  if [ "$CURVES" = 1 ]; then
    step "$out/curves.png" lfp report --curves "${models[@]}" --out "$out/curves.png"
  fi
  [ "$DRY" = 1 ] || echo "done: tables in $out/report.md and $out/report.csv" >&2
}
