#!/usr/bin/env bash
# Issue 13, item 1: `mcufit search` on MNIST at μNAS's bounds made 1.5x tighter (peak <= 1,700 B,
# weights <= 3,000 B, MACs <= 20 M), then the usual last step of a search: the TOP candidates by
# validation accuracy retrained from scratch on the whole training split (`mcufit train TRIAL_DIR`: the
# trial's pruned architecture, so the bounds still hold), the final model chosen on validation only;
# its test accuracy is read once. Then every member of the front exported and verified (bench/search_fronts.sh).
#
# Usage: bench/search_mnist.sh [OUT_DIR]       (default /tmp/mcufit-search-mnist)
# Env:   BUDGET (search wall time, default 50m), WORKERS (processes on the one SQLite store, 1 thread
#        each; default 2), LIMIT (training samples per proxy trial, default 20000), TOP (default 5),
#        FINAL_EPOCHS (default 60), FINAL_WD (weight decays of the final training, each tried on every
#        TOP trial and chosen on validation with it; default "0.0005 0.005"), FITNESS (the tournament's
#        ranking, --fitness: error or scalarised; default error), SEED (default 1),
#        MCUFIT (binary; default: build target/release/mcufit), MCUFIT_DATASETS (default ../shared/datasets).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/mcufit-search-mnist}"
. bench/lib.sh
bench_data search_mnist.sh mnist
bench_mcufit
bounds=(--peak 1700 --size 3000 --macs 20M)
if [ -e "$out/search.db" ]; then
    echo "search_mnist.sh: $out already holds a search; give a new OUT_DIR (or continue it: mcufit search --resume --out $out)" >&2
    exit 2
fi
mkdir -p "$out"
echo "start $(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/times.txt"
t0=$(date +%s)
"$M" search --data "mnist:$data/mnist" "${bounds[@]}" --out "$out" --space ds-cnn --max-blocks 4 \
    --trials 1000 --time-budget "${BUDGET:-50m}" --population 16 --sample 4 --fitness "${FITNESS:-error}" \
    --proxy-epochs 3 --prune-epochs 3 --limit "${LIMIT:-20000}" --threads 1 --seed "${SEED:-1}" > "$out/worker1.log" 2>&1 &
pids=($!)
for _ in $(seq 300); do [ -f "$out/search.db" ] && break; sleep 0.2; done
sleep 2
kill -0 "${pids[0]}" 2> /dev/null || { cat "$out/worker1.log" >&2; exit 1; }
for i in $(seq 2 "${WORKERS:-2}"); do
    # A worker's --time-budget is its own (a Slurm task's time limit works the same way).
    "$M" search --worker --store "sqlite:$out/search.db" --threads 1 --time-budget "${BUDGET:-50m}" \
        > "$out/worker$i.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
t1=$(date +%s)
"$M" search --status --store "sqlite:$out/search.db" | tee "$out/status.txt"
"$M" search --status --json --store "sqlite:$out/search.db" > "$out/status.json"
echo "search: $((t1 - t0)) s" | tee -a "$out/times.txt"

# Retraining of the TOP trials by validation accuracy (never test), WORKERS at a time.
top=$(python3 - "$out/search.db" "${TOP:-5}" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT id FROM mcufit_trials WHERE status='done' ORDER BY val_accuracy DESC, id LIMIT ?", (int(sys.argv[2]),))
print(" ".join(str(r[0]) for r in rows))
EOF
)
wds="${FINAL_WD:-0.0005 0.005}"
echo "final training of trials $top, weight decay $wds" | tee -a "$out/times.txt"
finals=()
running=0
for id in $top; do
    for wd in $wds; do
        finals+=("$id-wd$wd")
        "$M" train "$out/trials/$id" --data "mnist:$data/mnist" --epochs "${FINAL_EPOCHS:-60}" --threads 1 \
            --seed "${SEED:-1}" --weight-decay "$wd" --out "$out/final/$id-wd$wd" > "$out/final-$id-wd$wd.log" 2>&1 &
        running=$((running + 1))
        if [ "$running" -ge "${WORKERS:-2}" ]; then wait -n; running=$((running - 1)); fi
    done
done
wait
t2=$(date +%s)
echo "final training: $((t2 - t1)) s; total $((t2 - t0)) s" | tee -a "$out/times.txt"
python3 - "$out" "${finals[@]}" <<'EOF' | tee "$out/final.md"
import json, sys
out, ids = sys.argv[1], sys.argv[2:]
rows = []
for i in ids:
    r = json.load(open(f"{out}/final/{i}/report.json"))  # the best epoch on validation
    rows.append((r["val_accuracy"], r["test_accuracy"], i))
print("| trial-weight decay | val % (after final training) | test % |")
print("|---|---:|---:|")
for v, t, i in rows:
    print(f"| {i} | {100*v:.2f} | {100*t:.2f} |")
v, t, i = max(rows)
print(f"\nchosen on validation: {i}, val {100*v:.2f} %, test {100*t:.2f} %")
EOF
for id in "${finals[@]}"; do
    "$M" export "$out/final/$id" --format tflite --out "$out/final/$id.tflite" --force --verify --verify-inputs 1000 \
        --m4-inputs 10 "${bounds[@]}" > "$out/final/$id.verify.txt" 2>&1 || echo "export of final $id failed" >&2
    grep -E "fits|mismatches|accuracy on" "$out/final/$id.verify.txt" | sed "s/^/final $id: /"
done
bash bench/search_fronts.sh "$out" "${bounds[@]}" | tee "$out/front.md"
