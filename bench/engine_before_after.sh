#!/usr/bin/env bash
# Issue 12, Must show 3 (and issue 11, Must show 4): the same recipes, same seed, on burn's autodiff
# (`--engine burn`, the engine before this change) and on mcufit's CPU engine (`--engine auto`),
# interleaved, each REPEATS times; prints wall seconds and the result of every run.
#   compress  mnist-ds on MNIST to the 1.5x-tighter muNAS bounds, 4 epochs of 200 steps from scratch
#   depth     ds-cnn on Speech Commands: all 5 heads (ds:32,16) on the frozen trunk of BASE, 2 epochs
#   plain     ds-cnn trained 2 epochs (the "one plain training epoch" the head cost is measured against)
# Usage: bash bench/engine_before_after.sh BASE_DSCNN_DIR   Env: REPEATS (2), THREADS (2), MCUFIT
# (binary), MCUFIT_DATASETS (default ../shared/datasets).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
BASE=${1:?give a trained ds-cnn model directory (e.g. the base of a ds-cnn fit run)}
bench_data engine_before_after.sh mnist speech_commands_v0.02_test
MNIST=$data/mnist
SPEECH=$data/speech_commands_v0.02_test
REPEATS=${REPEATS:-2}
THREADS=${THREADS:-2}
bench_mcufit
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "load: $(uptime)"
secs() { python3 -c 'import sys,time; print(f"{float(sys.argv[1]):.1f}")' "$1"; }
for r in $(seq 1 "$REPEATS"); do
  for engine in burn auto; do
    d="$OUT/c-$engine-$r"
    t0=$(date +%s.%N)
    "$M" compress zoo:mnist-ds --data "mnist:$MNIST" --peak 1700 --size 3000 --macs 20M --epochs 4 \
      --max-steps 200 --threads "$THREADS" --engine "$engine" --no-augment --out "$d" --json >"$d.json" 2>"$d.log"
    t=$(python3 -c "import time; print(time.time() - $t0)")
    acc=$(python3 -c "import json; r=json.load(open('$d.json')); a=r['accuracy_after']; print(f\"val {100*a['val']:.2f} % test {100*a['test']:.2f} %\")")
    echo "compress  engine=$engine run $r: $(secs "$t") s  $acc"

    d="$OUT/d-$engine-$r"
    t0=$(date +%s.%N)
    "$M" compress zoo:ds-cnn --from "$BASE" --data "speech-commands:$SPEECH" --method depth --peak 16000 \
      --epochs 2 --threads "$THREADS" --engine "$engine" --out "$d" >"$d.log" 2>&1
    t=$(python3 -c "import time; print(time.time() - $t0)")
    heads=$(python3 -c "import json; r=json.load(open('$d/report.json')); print(f\"{r['times']['heads'] / 2:.1f}\")")
    echo "depth     engine=$engine run $r: $(secs "$t") s  (heads: $heads s per epoch, all 5 at once); $(tail -1 "$d.log")"

    d="$OUT/p-$engine-$r"
    "$M" train zoo:ds-cnn --data "speech-commands:$SPEECH" --epochs 2 --threads "$THREADS" --engine "$engine" \
      --out "$d" >"$d.log" 2>&1
    echo "plain     engine=$engine run $r: $(python3 -c "
import json; r=json.load(open('$d/report.json')); h=r['history']
print(f\"{sum(e['seconds'] for e in h)/len(h):.1f} s per epoch ({h[-1]['images_per_sec']:.0f} img/s), test {100*r['test_accuracy']:.2f} %\")")"
  done
done
