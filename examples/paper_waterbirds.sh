#!/usr/bin/env bash
# The paper's WaterBirds experiment (Section 5, Tables 1 and 2): ResNet-50 fine-tuned from ImageNet
#
#   bash examples/paper_waterbirds.sh --dry-run                      # print every lfp command, run nothing
#   bash examples/paper_waterbirds.sh --root DIR [--variant paper-code] [--seeds 0,1,2,3,4] [--out DIR] [--weights FILE|IMAGENET1K_V1]
#
# For each of 5 seeds: train the standard model, then for each target rule (random) and each of the five methods
# (pgd-l2, pgd-linf, pgd-l0, cfe-l2, pcfe-l0) perturb the training split, retrain a fresh model on it alone and
# evaluate it; Grad-CAM maps of all of them; at the end lfp report's tables. Settings: the presets in
# examples/configs/waterbirds/{paper-text,paper-code}/ (README.md, "Paper presets"). The root: --root DIR or $WATERBIRDS_ROOT (the folder with metadata.csv, e.g. waterbird_complete95_forest2water2/).
# A step whose output exists is skipped and an interrupted one resumed: run the script again to continue.
set -euo pipefail
NAME=waterbirds
TITLE="The paper's WaterBirds experiment (Section 5, Tables 1 and 2): ResNet-50 fine-tuned from ImageNet"
ROOT_ENV=WATERBIRDS_ROOT
ROOT_HINT="the folder with metadata.csv, e.g. waterbird_complete95_forest2water2/"
CONFIGS="$(dirname "$0")/configs/waterbirds"
TARGETS=random
WEIGHTS=1
CURVES=0
source "$(dirname "$0")/lib/paper.sh"
paper_main "$@"
