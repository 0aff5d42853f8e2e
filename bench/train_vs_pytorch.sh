#!/usr/bin/env bash
# Training and evaluation throughput, mcufit vs PyTorch CPU, side by side: the same layers (PyTorch's
# built from each model's IR JSON by bench/torch_ir.py), the same data file (2048 seeded random
# examples of the model's input shape), batch 64, SGD momentum 0.9, weight decay 5e-4, constant LR
# 0.05, no augmentation; warm-up steps untimed; median of REPEATS timed blocks of STEPS steps, with
# [min-max]. Evaluation: all 2048 examples at batch 256 (mcufit_train::evaluate / torch eval+no_grad).
# Each (model, threads) runs mcufit then PyTorch back to back, one process each (thread pools are
# per process). Before timing, a check per model loads mcufit's weights into the PyTorch model and
# compares eval logits and parameter counts; a mismatch stops the run.
#
# Sides: crates/mcufit-train/examples/throughput.rs, bench/torch_throughput.py, bench/torch_ir.py.
# Not part of CI: it installs PyTorch (CPU wheel) into .venv-torch when that is missing.
#
# Usage: bash bench/train_vs_pytorch.sh [STEPS]          (default 40)
# Env: REPEATS (5), WARMUP (5), THREADS ("1 2"), MODELS (space-separated, default below),
#      BENCH_JSON=path: also write the table as JSON there.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-40}
REPEATS=${REPEATS:-5}
WARMUP=${WARMUP:-5}
THREADS=${THREADS:-"1 2"}
MODELS=${MODELS:-"zoo:mnist-cnn zoo:ds-cnn zoo:resnet-8 bench/models/mnist-ds-unas-pruned.json"}
PY=.venv-torch/bin/python

echo "before: $(uptime)"
if [ ! -x "$PY" ] || ! "$PY" -c "import torch, numpy" 2>/dev/null; then
  # PyPI's wheel (it pulls CUDA libraries, ~5 GB, unused here: the bench runs on the CPU).
  echo "creating .venv-torch (PyTorch from PyPI)"
  python3 -m venv .venv-torch
  .venv-torch/bin/pip install -q torch numpy
fi
cargo build --release -q -p mcufit-train --example throughput
BIN=./target/release/examples/throughput
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

i=0
for model in $MODELS; do
  i=$((i + 1))
  data="$OUT/data$i.bin"
  # Shared data + IR JSON + a reference (weights after 3 steps, eval logits) for the check.
  "$BIN" --model "$model" --write-data "$data" --n 2048
  if ! "$PY" bench/torch_ir.py --check "$data" >"$data.check"; then
    echo "CHECK FAILED: PyTorch's $model differs from mcufit's: $(cat "$data.check")" >&2
    exit 1
  fi
  for t in $THREADS; do
    "$BIN" --model "$model" --data "$data" --threads "$t" --steps "$STEPS" --warmup "$WARMUP" \
      --repeats "$REPEATS" >>"$OUT/mcufit.jsonl"
    "$PY" bench/torch_throughput.py --model-json "$data.model.json" --data "$data" --name "$model" \
      --threads "$t" --steps "$STEPS" --warmup "$WARMUP" --repeats "$REPEATS" >>"$OUT/torch.jsonl"
  done
  cat "$data.check" >>"$OUT/checks.jsonl"
done

"$PY" - "$OUT" "$STEPS" "$REPEATS" "$WARMUP" "${BENCH_JSON:-}" <<'PY'
import json, os, sys
out, steps, repeats, warmup, dest = sys.argv[1:6]
load = lambda f: [json.loads(l) for l in open(os.path.join(out, f)) if l.strip()]
mcu, tor, checks = load("mcufit.jsonl"), load("torch.jsonl"), load("checks.jsonl")
bad = [(m["model"], m["params"], t["params"]) for m, t in zip(mcu, tor) if m["params"] != t["params"]]
if bad:
    sys.exit(f"PARAMETER COUNT MISMATCH (model, mcufit, torch): {bad}")
print(f"\nbatch 64, {steps} steps x {repeats} repeats (median [min-max] images/s), {warmup} warm-up steps; "
      f"eval: 2048 images at batch 256; PyTorch {tor[0]['torch']}")
print("check (mcufit weights in PyTorch, eval logits on 256 examples): "
      + "; ".join(f"{c['model']} {c['params']} params, max|diff| {c['max_abs_diff']:.1e}" for c in checks))
rows = []
for m, t in zip(mcu, tor):
    rows.append({
        "model": m["model"], "threads": m["threads"], "params": m["params"], "engine": m["engine"],
        "mcufit_train": m["train_images_per_sec"], "mcufit_train_spread": m["train_spread"],
        "torch_train": t["train_images_per_sec"], "torch_train_spread": t["train_spread"],
        "train_ratio": m["train_images_per_sec"] / t["train_images_per_sec"],
        "mcufit_eval": m["eval_images_per_sec"], "mcufit_eval_spread": m["eval_spread"],
        "torch_eval": t["eval_images_per_sec"], "torch_eval_spread": t["eval_spread"],
        "eval_ratio": m["eval_images_per_sec"] / t["eval_images_per_sec"],
    })
sp = lambda v, s: f"{v:.0f} ({s[0]:.0f}-{s[1]:.0f})"
head = ["model", "threads", "mcufit img/s (spread)", "PyTorch img/s (spread)", "ratio",
        "eval mcufit", "eval PyTorch", "eval ratio"]
cells = [[r["model"].replace("bench/models/", ""), str(r["threads"]),
          sp(r["mcufit_train"], r["mcufit_train_spread"]), sp(r["torch_train"], r["torch_train_spread"]),
          f"{r['train_ratio']:.2f}x", f"{r['mcufit_eval']:.0f}", f"{r['torch_eval']:.0f}",
          f"{r['eval_ratio']:.2f}x"] for r in rows]
w = [max(len(c[i]) for c in cells + [head]) for i in range(len(head))]
line = lambda c: "| " + " | ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(c)) + " |"
print(line(head))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for c in cells:
    print(line(c))
print("ratio = mcufit / PyTorch (> 1: mcufit faster)")
if dest:
    with open(dest, "w") as f:
        json.dump({"steps": int(steps), "repeats": int(repeats), "warmup": int(warmup), "batch": 64,
                   "eval_batch": 256, "examples": 2048, "torch": tor[0]["torch"], "checks": checks,
                   "rows": rows}, f, indent=2)
    print(f"wrote {dest}")
PY
echo "after: $(uptime)"
