#!/usr/bin/env bash
# The paper's SpuCoAnimals experiment (Section 5, Tables 1 and 2) on SpuCo's dogs: ResNet-50 fine-tuned from ImageNet
#
#   bash examples/paper_spuco_dogs.sh --dry-run                      # print every lfp command, run nothing
#   bash examples/paper_spuco_dogs.sh --root DIR [--variant paper-code] [--seeds 0,1,2,3,4] [--out DIR] [--weights FILE|IMAGENET1K_V1]
#
# For each of 5 seeds: train the standard model, then for each target rule (random) and each of the five methods
# (pgd-l2, pgd-linf, pgd-l0, cfe-l2, pcfe-l0) perturb the training split, retrain a fresh model on it alone and
# evaluate it; Grad-CAM maps of all of them; at the end lfp report's tables. Settings: the presets in
# examples/configs/spuco-dogs/{paper-text,paper-code}/ (README.md, "Paper presets"). The root: --root DIR or $SPUCO_ROOT (the folder holding spuco_dogs/{train,val,test}/).
# A step whose output exists is skipped and an interrupted one resumed: run the script again to continue.
set -euo pipefail
NAME=spuco-dogs
TITLE="The paper's SpuCoAnimals experiment (Section 5, Tables 1 and 2) on SpuCo's dogs: ResNet-50 fine-tuned from ImageNet"
ROOT_ENV=SPUCO_ROOT
ROOT_HINT="the folder holding spuco_dogs/{train,val,test}/"
CONFIGS="$(dirname "$0")/configs/spuco-dogs"
TARGETS=random
WEIGHTS=1
CURVES=0
# the paper-matching public script numbers the dogs by sorted folder name (big_dogs = 0, small_dogs = 1), the reverse
# of spuco's own order (lfp's default); paper-code follows it, so its tables name the classes as that script does
CODE_DATA_OPTS=",order=sorted"
source "$(dirname "$0")/lib/paper.sh"
paper_main "$@"
