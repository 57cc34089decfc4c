#!/usr/bin/env bash
# The standard chain on the embedded spurious-digits data (about 2 minutes on 2 CPU cores):
# a standard model is misled by the background; a fresh model trained only on PGD-perturbed images
# with (mostly wrong) target labels still classifies clean images.
set -euo pipefail
out="${1:-quickstart-out}"
mkdir -p "$out"
cd "$out"
set -x
lfp train   --data spurious-digits --arch small-cnn --out model.pt --force
lfp perturb --method pgd-l2 --in model.pt --out pgd.h5 --force      # data taken from model.pt's own record
lfp retrain --in pgd.h5 --out model_pgd.pt --force
lfp eval    --in model_pgd.pt --out eval_pgd.json --force              # clean train/val/test accuracy, groups, WGA
lfp info    pgd.h5                                                      # what the file is and how it was made
