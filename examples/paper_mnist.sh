#!/usr/bin/env bash
# The paper's MNIST experiment (Appendix B.1, Figures 13-15): Kumano et al.'s ConvNet
#
#   bash examples/paper_mnist.sh --dry-run                      # print every lfp command, run nothing
#   bash examples/paper_mnist.sh --root DIR [--variant paper-code] [--seeds 0,1,2,3,4] [--out DIR]
#
# For each of 5 seeds: train the standard model, then for each target rule (random,deterministic) and each of the five methods
# (pgd-l2, pgd-linf, pgd-l0, cfe-l2, pcfe-l0) perturb the training split, retrain a fresh model on it alone and
# evaluate it; Grad-CAM maps of all of them; at the end lfp report's tables and training curves. Settings: the presets in
# examples/configs/mnist/{paper-text,paper-code}/ (README.md, "Paper presets"). The root: --root DIR or $MNIST_ROOT (the folder holding MNIST/raw/ (torchvision's layout)).
# A step whose output exists is skipped and an interrupted one resumed: run the script again to continue.
set -euo pipefail
NAME=mnist
TITLE="The paper's MNIST experiment (Appendix B.1, Figures 13-15): Kumano et al.'s ConvNet"
ROOT_ENV=MNIST_ROOT
ROOT_HINT="the folder holding MNIST/raw/ (torchvision's layout)"
CONFIGS="$(dirname "$0")/configs/mnist"
TARGETS=random,deterministic
WEIGHTS=0
CURVES=1
source "$(dirname "$0")/lib/paper.sh"
paper_main "$@"
