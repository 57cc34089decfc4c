#!/usr/bin/env bash
# Perturb a training split on several GPU machines under SLURM: one torchrun per node (srun starts them), torchrun
# starts one lfp process per GPU, and the processes meet at a rendezvous on the job's first node.
#
#   sbatch examples/slurm_perturb.sh MODEL.pt OUT.h5 [more lfp perturb options...]
#   sbatch --nodes 4 --gpus-per-node 8 examples/slurm_perturb.sh model.pt pcfe.h5 --method pcfe-l0
#
# The batches are shared among all processes; the output is the one file a single process would write, written by
# rank 0. OUT (and its progress folder OUT.resume/) must be on a filesystem every node sees. A job that was killed
# (time limit, preemption) continues where it stopped when submitted again with --resume, with any number of nodes.
#
#SBATCH --job-name=lfp-perturb
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --output=lfp-perturb-%j.log
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: sbatch $0 MODEL.pt OUT.h5 [lfp perturb options...]" >&2
    exit 2
fi
model="$1"
out="$2"
shift 2

# the rendezvous: the first node of the job, a port free there, an id unique to the job
head_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
port="${LFP_RDZV_PORT:-29500}"
gpus="${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L | wc -l)}"
# data loading threads per process (torchrun sets 1 otherwise)
export OMP_NUM_THREADS="$(( ${SLURM_CPUS_PER_TASK:-$gpus} / gpus > 0 ? ${SLURM_CPUS_PER_TASK:-$gpus} / gpus : 1 ))"

srun --ntasks-per-node=1 --kill-on-bad-exit=1 \
    torchrun \
        --nnodes "$SLURM_NNODES" \
        --nproc-per-node "$gpus" \
        --rdzv-backend c10d \
        --rdzv-endpoint "$head_node:$port" \
        --rdzv-id "lfp-$SLURM_JOB_ID" \
        -m lfpcli perturb --in "$model" --out "$out" --device cuda "$@"
