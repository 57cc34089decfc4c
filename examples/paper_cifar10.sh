#!/usr/bin/env bash
# The paper's CIFAR-10 experiment (Appendix B.3, Figures 19-21): WideResNet-28-10
#
#   bash examples/paper_cifar10.sh --dry-run                      # print every lfp command, run nothing
#   bash examples/paper_cifar10.sh --root DIR [--variant paper-code] [--seeds 0,1,2,3,4] [--out DIR]
#
# For each of 5 seeds: train the standard model, then for each target rule (random,deterministic) and each of the five methods
# (pgd-l2, pgd-linf, pgd-l0, cfe-l2, pcfe-l0) perturb the training split, retrain a fresh model on it alone and
# evaluate it; Grad-CAM maps of all of them; at the end lfp report's tables and training curves. Settings: the presets in
# examples/configs/cifar10/{paper-text,paper-code}/ (README.md, "Paper presets"). The root: --root DIR or $CIFAR10_ROOT (the folder holding cifar-10-batches-py/ or cifar-10-batches-bin/).
# A step whose output exists is skipped and an interrupted one resumed: run the script again to continue.
set -euo pipefail
NAME=cifar10
TITLE="The paper's CIFAR-10 experiment (Appendix B.3, Figures 19-21): WideResNet-28-10"
ROOT_ENV=CIFAR10_ROOT
ROOT_HINT="the folder holding cifar-10-batches-py/ or cifar-10-batches-bin/"
CONFIGS="$(dirname "$0")/configs/cifar10"
TARGETS=random,deterministic
WEIGHTS=0
CURVES=1
source "$(dirname "$0")/lib/paper.sh"
paper_main "$@"
