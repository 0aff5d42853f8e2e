#!/usr/bin/env bash
# The engine's training step before and after a change: `engine_bench` (one forward + backward at batch
# 64, synthetic data, median of REPS steps after 3 warm-up steps) built at revision BASE (in a git worktree)
# and at the working tree, run on the same models back to back, ROUNDS times, interleaved. Prints the
# load average before and after, and per model the ms/step of each round and the change of the medians.
#
# Usage: bash bench/engine_ab.sh BASE [MODEL...]
#   BASE: a git revision (e.g. 742e7f1); MODEL: zoo:NAME or a model .json (default: ds-cnn,
#   mobilenet-v1-025-cifar, resnet-8, mnist-ds, and `ds:32,16` head models on a 32x32x16 and a 16x16x32
#   cut, written from bench/models/head-ds32-16.json).
# Env: THREADS (1), REPS (20), ROUNDS (3), WORK (cache of the BASE build, default /tmp/mcufit-engine-ab).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?give a base revision, e.g. 742e7f1}
shift
work=${WORK:-/tmp/mcufit-engine-ab}
rev=$(git rev-parse --short "$base")
mkdir -p "$work"
if [ ! -x "$work/$rev/engine_bench" ]; then
    rm -rf "$work/tree-$rev"
    git worktree add -q --detach "$work/tree-$rev" "$rev"
    (cd "$work/tree-$rev" && cargo build --release -q -p mcufit-engine --example engine_bench --target-dir "$work/target")
    mkdir -p "$work/$rev"
    cp "$work/target/release/examples/engine_bench" "$work/$rev/engine_bench"
    git worktree remove --force "$work/tree-$rev"
fi
cargo build --release -q -p mcufit-engine --example engine_bench
cp target/release/examples/engine_bench "$work/current"
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    for s in 32,32,16 16,16,32; do
        python3 - "$s" "$work/head-${s//,/-}.json" <<'EOF'
import json, sys
h, w, c = map(int, sys.argv[1].split(","))
m = json.load(open("bench/models/head-ds32-16.json"))
m["nodes"][0]["shape"] = [h, w, c]
m["name"] = f"ds:32,16 head on {h}x{w}x{c}"
json.dump(m, open(sys.argv[2], "w"))
EOF
    done
    models=(zoo:ds-cnn zoo:mobilenet-v1-025-cifar zoo:resnet-8 zoo:mnist-ds "$work/head-32-32-16.json" "$work/head-16-16-32.json")
fi
echo "before: $(uptime)"
out="$work/runs.txt"
: > "$out"
for r in $(seq 1 "${ROUNDS:-3}"); do
    for side in "$rev" current; do
        bin="$work/$side/engine_bench"
        [ "$side" = current ] && bin="$work/current"
        "$bin" "${models[@]}" --threads "${THREADS:-1}" --reps "${REPS:-20}" | grep "ms/step" |
            sed "s|^|$side |" >> "$out"
    done
done
echo "after: $(uptime)"
python3 - "$out" "$rev" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, rest = line.split(" ", 1)
    model, ms = rest.split(": ")[0], float(rest.split(": ")[1].split()[0])
    runs[(model, side)].append(ms)
rev = sys.argv[2]
print(f"| model | {rev} ms/step | current ms/step | change of the medians |")
print("|---|---|---|---|")
for model in dict.fromkeys(m for m, _ in runs):
    a, b = runs[(model, rev)], runs[(model, "current")]
    ch = 100 * (statistics.median(b) / statistics.median(a) - 1)
    print(f"| {model} | {' / '.join(f'{v:.2f}' for v in a)} | {' / '.join(f'{v:.2f}' for v in b)} | {ch:+.0f} % |")
EOF
