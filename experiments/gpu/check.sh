#!/usr/bin/env bash
# GPU check of the CIFAR-10-LT path, offline, about 8 minutes on one GPU:
#   experiments/gpu/check.sh CIFAR_ROOT [OUT]
# CIFAR_ROOT holds cifar-10-batches-py/ (the official python batches); OUT defaults to results/gpu_check.
# 1. images/s of the device and the worker pipelines next to a ResNet-32 bf16 training step (real images);
# 2. GPU utilisation while one short ResNet-32 bf16 fit trains on CIFAR10-LT (IF 100), pipeline device and
#    pipeline workers (4 workers), and the epoch time of each;
# 3. a --runs-per-gpu 4 sweep of four short runs on GPU 0;
# 4. the solver tests on CUDA (tests/ot/test_cuda.py);
# 5. the time of one full-protocol epoch extrapolated to a whole `make cifar10-lt` (33 runs x 650 epochs).
# Everything lands in OUT; OUT/summary.md collects the numbers for docs/images.md.
set -euo pipefail
ROOT=${1:?usage: experiments/gpu/check.sh CIFAR_ROOT [OUT]}
OUT=${2:-results/gpu_check}
PY=${PY:-.venv/bin/python}
[ -f "$ROOT/cifar-10-batches-py/test_batch" ] || { echo "no cifar-10-batches-py/ in $ROOT" >&2; exit 2; }
command -v nvidia-smi > /dev/null || { echo "nvidia-smi not found: this check needs an NVIDIA GPU" >&2; exit 2; }
mkdir -p "$OUT"
export WANDB_MODE=disabled
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $CARD" | tee "$OUT/summary.md"

echo "== 1. input pipelines vs a ResNet-32 step"
$PY experiments/images/bench_input_pipeline.py --device cuda --data-root "$ROOT" --out "$OUT" | tee -a "$OUT/summary.md"

# one short fit with GPU utilisation sampled every 200 ms; prints the run's mean utilisation and epoch time
fit_with_utilisation() {  # $1 name, then extra overrides
  local name=$1; shift
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 > "$OUT/util_$name.csv" &
  local smi=$!
  local t0=$(date +%s.%N)
  $PY -m otcls.cli fit --config configs/base/cifar.yaml --config configs/cifar10_lt/data.yaml \
    --config configs/cifar10_lt/ce.yaml --data.init_args.root "$ROOT" --data.init_args.download false \
    --trainer.max_epochs 3 --trainer.default_root_dir "$OUT/fit_$name" --trainer.enable_progress_bar false \
    --test_after_fit false "$@" > "$OUT/fit_$name.log" 2>&1
  local t1=$(date +%s.%N)
  kill $smi
  $PY - "$OUT/util_$name.csv" "$t0" "$t1" "$name" <<'PYEOF' | tee -a "$OUT/summary.md"
import sys
vals = [float(v) for v in open(sys.argv[1]).read().split() if v.strip()]
secs = float(sys.argv[3]) - float(sys.argv[2])
print(f"- {sys.argv[4]}: 3 epochs (with start-up and validation) in {secs:.0f} s, {secs / 3:.1f} s/epoch; "
      f"GPU utilisation mean {sum(vals) / max(len(vals), 1):.0f} % over {len(vals)} samples")
PYEOF
}
echo "== 2. GPU utilisation during a short fit" | tee -a "$OUT/summary.md"
fit_with_utilisation device --data.init_args.pipeline device
fit_with_utilisation workers --data.init_args.pipeline workers --data.init_args.num_workers 4

echo "== 3. four runs sharing GPU 0" | tee -a "$OUT/summary.md"
t0=$(date +%s)
$PY -m otcls.cli sweep --base configs/base/cifar.yaml configs/cifar10_lt/data.yaml \
  --methods configs/cifar10_lt/{ce,balanced_softmax,focal,logit_adjust}.yaml --seeds 0 \
  --gpus 0 --runs-per-gpu 4 --out "$OUT/sweep4" -- --data.init_args.root "$ROOT" \
  --data.init_args.download false --trainer.max_epochs 2 --data.init_args.max_test_per_class 200 \
  > "$OUT/sweep4.log" 2>&1
echo "- 4 runs x 2 epochs, 4 at once on GPU 0: $(( $(date +%s) - t0 )) s in all" | tee -a "$OUT/summary.md"

echo "== 4. solvers on CUDA" | tee -a "$OUT/summary.md"
$PY -m pytest -q tests/ot/test_cuda.py 2>&1 | tail -3 | tee -a "$OUT/summary.md"

echo "== 5. extrapolated make cifar10-lt" | tee -a "$OUT/summary.md"
$PY - "$OUT" <<'PYEOF' | tee -a "$OUT/summary.md"
import glob, os, re, sys
out = sys.argv[1]
text = open(os.path.join(out, "summary.md")).read()
epoch = float(re.search(r"- device: .*?, ([\d.]+) s/epoch", text).group(1))
runs, epochs = 33, 650
hours = runs * epochs * epoch / 3600
print(f"- one epoch (device pipeline, one run alone): {epoch:.1f} s; 33 runs x 650 epochs: {hours:.1f} GPU-hours "
      f"one at a time (fewer with --runs-per-gpu, see section 3)")
PYEOF
echo "summary: $OUT/summary.md"
