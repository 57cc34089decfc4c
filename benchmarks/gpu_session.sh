#!/usr/bin/env bash
# Everything that needs a GPU, in one go, for a session that is lent one: the CUDA tests, then every GPU benchmark.
# Writes its logs under ${OUT:-gpu-out}; each step has its own time limit so one slow step cannot eat the rest.
#
#   bash benchmarks/gpu_session.sh            # ~10 minutes on one H100/H200
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-out}"
mkdir -p "$out"
py="${PYTHON:-python}"
run() {  # run NAME SECONDS CMD...: log to $out/NAME.log, never stop the script
    local name=$1 limit=$2; shift 2
    echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee -a "$out/summary.txt"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "   exit $? after $SECONDS s" | tee -a "$out/summary.txt"
    tail -25 "$out/$name.log" >> "$out/summary.txt"
}
export LFP_CACHE_DIR="${LFP_CACHE_DIR:-$out/cache}"
"$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/device.txt"
run cuda-tests 240 "$py" -m pytest -q -m gpu tests/lib/test_cuda.py tests/lib/test_density.py tests/lib/test_vae.py
run model 120 "$py" -m lfpcli train --data spurious-digits --out "$out/model.pt" --device cuda --force -q
run bench-pgd 120 "$py" benchmarks/bench_pgd.py --device cuda --repeats 5 --steps 30
run bench-solvers 180 "$py" benchmarks/bench_solvers.py --device cuda --model "$out/model.pt" --repeats 3
run bench-saliency 120 "$py" benchmarks/bench_saliency.py --device cuda --model "$out/model.pt" --repeats 3
run bench-synth 240 "$py" benchmarks/bench_synth.py --device cuda --what config,train
echo "done; logs in $out" | tee -a "$out/summary.txt"
