#!/usr/bin/env bash
# Trains zoo:mnist-cnn (same layers, batch 64, 2 threads, SGD-momentum) on real MNIST in mcufit and
# in PyTorch CPU, one after the other in one run, and prints images/s for each and the ratio.
# Not part of CI: PyTorch's default wheel pulls ~5 GB of CUDA packages into .venv-torch.
# Usage: bash bench/train_vs_pytorch.sh [MNIST_DIR] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
MNIST=${1:-../shared/datasets/mnist}
STEPS=${2:-200}
[ -f "$MNIST/train-images-idx3-ubyte.gz" ] || { echo "no MNIST in $MNIST"; exit 1; }
if [ ! -x .venv-torch/bin/python ] || ! .venv-torch/bin/python -c "import torch" 2>/dev/null; then
  python3 -m venv .venv-torch && .venv-torch/bin/pip install -q torch numpy
fi
cargo build --release -q -p mcufit-cli
OUT=$(mktemp -d)
# mcufit: one epoch capped at STEPS steps; its images/s is measured over the training steps.
./target/release/mcufit train zoo:mnist-cnn --data "mnist:$MNIST" --epochs 1 --max-steps "$STEPS" \
  --batch 64 --threads 2 --no-augment --out "$OUT/mcufit" >/dev/null 2>&1
MCU=$(.venv-torch/bin/python -c "import json,sys; print(json.load(open('$OUT/mcufit/report.json'))['summary']['history'][0]['images_per_sec'])")
TORCH=$(.venv-torch/bin/python bench/torch_mnist_cnn.py "$MNIST" "$STEPS" 10)
TORCH_IPS=$(echo "$TORCH" | .venv-torch/bin/python -c "import json,sys; print(json.load(sys.stdin)['images_per_sec'])")
.venv-torch/bin/python - "$MCU" "$TORCH_IPS" "$STEPS" <<'PY'
import sys
m, t, steps = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print(f"mnist-cnn, batch 64, 2 threads, {steps} steps")
print(f"mcufit   {m:9.1f} images/s")
print(f"pytorch  {t:9.1f} images/s")
print(f"ratio    {m / t:9.2f}x  (mcufit / pytorch)")
PY
rm -rf "$OUT"
