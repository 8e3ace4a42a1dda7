#!/usr/bin/env bash
# The GPU checks (bf16 and compiled flows on CUDA) in one script, for a machine with one CUDA GPU:
#   bash benchmarks/gpu_check.sh            (from the repository root; writes under $OUT or
#                                            benchmarks/results/)
# 1. a CUDA build of PyTorch in .venv-gpu (the CPU wheel of the Makefile cannot see a GPU);
# 2. a tiny training run on the GPU, fp32 and bf16-mixed (trainer=gpu);
# 3. the training-step suite at the paper's sizes, fp32 and bf16 autocast, then again with the
#    flow stacks compiled: tokens/s per prior for the README's Performance section.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
VENV=.venv-gpu
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "torch==${TORCH_VERSION:-2.13.0}"
  "$VENV/bin/pip" install -q -e .
fi
PY="$VENV/bin/python"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  | tee "$OUT/gpu_name.txt"
export LATENTFLOW_DATA="${LATENTFLOW_DATA:-data}"
for precision in 32-true bf16-mixed; do
  "$PY" -m latentflow.train experiment=jsb/af_af debug=tiny trainer=gpu \
    trainer.precision=$precision trainer.enable_progress_bar=false \
    paths.log_dir="$OUT/gpu_train_$precision" 2>&1 | tail -n 3 | tee "$OUT/gpu_train_$precision.txt"
done
"$PY" -m benchmarks.bench_train --device cuda --sizes paper --precisions fp32,bf16 --no-eval \
  2>&1 | tee "$OUT/bench_gpu.txt"
cp benchmarks/results/train_cuda.csv "$OUT/train_cuda_fp32_bf16.csv" 2>/dev/null || true
"$PY" -m benchmarks.bench_train --device cuda --sizes paper --precisions bf16 --no-eval --compile \
  2>&1 | tee "$OUT/bench_gpu_compiled.txt"
