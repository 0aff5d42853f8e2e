#!/usr/bin/env bash
# Issue 13, item 2: `mcufit search` on CIFAR-10 at μNAS's bounds (peak <= 75,000 B, weights <= 75,000 B,
# MACs <= 30 M) against zoo:resnet-8 trained for the same wall time on the same machine.
#
# The two run side by side, one thread each (the machine has 2 cores):
#   core 1: the search (resnet space, proxy on LIMIT samples per split) for BUDGET, then the best trial
#           by validation retrained from scratch on the whole training split (FINAL_EPOCHS; the trial's
#           pruned architecture, so the bounds still hold);
#   core 2: zoo:resnet-8 trained from scratch for R8_EPOCHS (chosen to take about as long as core 1).
# Wall times of both are printed; accuracies are the best epoch on validation, test read once.
#
# Usage: bench/search_cifar.sh [OUT_DIR]       (default /tmp/mcufit-search-cifar)
# Env:   BUDGET (default 35m), LIMIT (default 10000), FINAL_EPOCHS (default 8), R8_EPOCHS (default 40),
#        TOTAL (seconds for search + final training, e.g. 10800 for 3 h: FINAL_EPOCHS then becomes the
#        epochs that fit in TOTAL less the search's wall time, from the winner's throughput on 5,000 images),
#        FITNESS (--fitness: error or scalarised, default error), SEED (default 1), MCUFIT (binary),
#        MCUFIT_DATASETS (default ../shared/datasets).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/mcufit-search-cifar}"
. bench/lib.sh
bench_data search_cifar.sh cifar10/train
bench_mcufit
D="images:$data/cifar10"
bounds=(--peak 75000 --size 75000 --macs 30M)
seed=${SEED:-1}
mkdir -p "$out"
t0=$(date +%s)
(
    /usr/bin/time -f "%e s" -o "$out/resnet8.time" "$M" train zoo:resnet-8 --data "$D" --epochs "${R8_EPOCHS:-40}" \
        --threads 1 --seed "$seed" --out "$out/resnet8" > "$out/resnet8.log" 2>&1
) &
r8=$!
"$M" search --data "$D" "${bounds[@]}" --out "$out/search" --space resnet --max-blocks 5 --trials 1000 \
    --time-budget "${BUDGET:-35m}" --population 12 --sample 4 --fitness "${FITNESS:-error}" --proxy-epochs 3 --prune-epochs 2 \
    --limit "${LIMIT:-10000}" --threads 1 --seed "$seed" > "$out/search.log" 2>&1
t1=$(date +%s)
best=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["progress"]["best"]["id"])' "$out/search/pareto.json")
final_epochs=${FINAL_EPOCHS:-8}
if [ -n "${TOTAL:-}" ]; then
    # The winner's training throughput (img/s, one epoch of 5,000 images); an epoch is 45,000 training
    # images plus 5,000 validation images at about a third of the cost; 60 s kept for loading the data.
    "$M" train "$out/search/trials/$best" --data "$D" --epochs 1 --limit 5000 --threads 1 --seed "$seed" \
        --out "$out/final-timing" > "$out/final-timing.log" 2>&1
    ips=$(grep -o '[0-9.]* img/s' "$out/final-timing.log" | tail -1 | cut -d' ' -f1)
    left=$((TOTAL - $(date +%s) + t0 - 60))
    final_epochs=$(python3 -c 'import sys; left, ips = float(sys.argv[1]), float(sys.argv[2]); print(max(1, int(left * ips / (45000 + 5000 / 3))))' "$left" "$ips")
    echo "final training: $final_epochs epochs at $ips img/s fit in the $left s left of TOTAL=$TOTAL" | tee "$out/final-epochs.txt"
fi
"$M" train "$out/search/trials/$best" --data "$D" --epochs "$final_epochs" --threads 1 --seed "$seed" \
    --out "$out/final" > "$out/final.log" 2>&1
t2=$(date +%s)
wait "$r8"
python3 - "$out" "$best" "$((t1 - t0))" "$((t2 - t0))" <<'EOF'
import json, sys
out, best, ts, tt = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
f = json.load(open(f"{out}/final/report.json"))
r = json.load(open(f"{out}/resnet8/report.json"))
r8s = float(open(f"{out}/resnet8.time").read().split()[0])
print(f"search {ts} s + final training of trial {best} = {tt} s: val {100*f['val_accuracy']:.2f} %, test {100*f['test_accuracy']:.2f} %")
print(f"resnet-8, {r['epochs']} epochs in {r8s:.0f} s: val {100*r['val_accuracy']:.2f} %, test {100*r['test_accuracy']:.2f} %")
EOF
"$M" analyze "$out/final" "${bounds[@]}" | tail -8
"$M" analyze "$out/resnet8" "${bounds[@]}" | tail -8
