#!/usr/bin/env bash
# The standard chain on the embedded spurious-digits data (about 3 minutes on 2 CPU cores; see the README):
# a standard model is misled by the background; a fresh model trained only on PGD-perturbed images
# with (mostly wrong) target labels still classifies clean images, and its worst group does better.
set -euo pipefail
out="${1:-quickstart-out}"
mkdir -p "$out"
cd "$out"
set -x
lfp train   --data spurious-digits --arch small-cnn --out model.pt --force
lfp perturb --method pgd-l2 --in model.pt --out pgd.h5 --force      # data taken from model.pt's own record
lfp retrain --in pgd.h5 --out model_pgd.pt --force
# the answer: the standard and the retrained model side by side on clean test data
# (how any file was made: lfp info pgd.h5)
lfp eval    --in model.pt --in model_pgd.pt --split test
