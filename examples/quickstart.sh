#!/usr/bin/env bash
# The standard chain on the embedded spurious-digits data (how long it runs depends on the machine): train a
# standard model on images whose background agrees with the label in 95% of training images; push each training
# image toward a random target label with PGD (l2); train a fresh model on those perturbed images and their (mostly
# wrong) target labels alone; then print both models' accuracy and worst-group accuracy on clean test images side
# by side. Which of the two has the higher worst-group accuracy depends on the run (seed, data, settings): the last
# table says what this run found.
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
