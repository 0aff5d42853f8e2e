#!/usr/bin/env bash
# Issue 11, Must show 4: one epoch of training every auxiliary head at once (frozen trunk, one
# trunk forward per batch feeding all heads, `ds:32,16` heads) against one plain training epoch of
# the full model, on the same data, threads and batches, interleaved, REPEATS times. Epoch time =
# the training part of an epoch as each run's report records it (`history[].seconds`,
# `head_histories[0][].seconds`; validation excluded on both sides).
#
# Also prints the work both sides do, from the cost model (`mcufit analyze --json`): a plain step
# is forward + backward of the model (~3x its MACs, less the stem's input gradient); a head step
# is the trunk's forward up to the deepest cut plus forward + backward of every head.
#
# Models: ds-cnn on Speech Commands (5 cuts), resnet-8 and mobilenet-v1-025-cifar on CIFAR-10
# (4 and 14 cuts). Bases are trained for one short epoch here: the time of a step does not depend
# on the weights.
# Usage: bash bench/depth_head_cost.sh    Env: REPEATS (3), THREADS (1), STEPS (60 steps per
# epoch), EPOCHS (2, the first one is a warm-up and is not counted), MODELS, LIMIT (examples
# per split, default 6000: the steps are capped anyway, and CIFAR-10's 60,000 JPEGs take a while
# to decode), MCUFIT (binary), MCUFIT_DATASETS (default ../shared/datasets).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
REPEATS=${REPEATS:-3}
THREADS=${THREADS:-1}
STEPS=${STEPS:-60}
EPOCHS=${EPOCHS:-2}
MODELS=${MODELS:-"ds-cnn resnet-8 mobilenet-v1-025-cifar"}
LIMIT=${LIMIT:-6000}
bench_data depth_head_cost.sh speech_commands_v0.02_test cifar10/train
SHARED=$data
bench_mcufit
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "before: $(uptime)"
data_of() {
  case $1 in
    ds-cnn) echo "speech-commands:$SHARED/speech_commands_v0.02_test" ;;
    *) echo "images:$SHARED/cifar10" ;;
  esac
}
for model in $MODELS; do
  data=$(data_of "$model")
  base="$OUT/$model-base"
  "$M" train "zoo:$model" --data "$data" --limit "$LIMIT" --epochs 1 --max-steps 5 --threads "$THREADS" --out "$base" >/dev/null 2>&1
  for r in $(seq 1 "$REPEATS"); do
    d="$OUT/$model-plain-$r"
    "$M" train "zoo:$model" --data "$data" --limit "$LIMIT" --epochs "$EPOCHS" --max-steps "$STEPS" \
      --threads "$THREADS" --out "$d" >"$d.log" 2>&1
    d="$OUT/$model-heads-$r"
    "$M" compress "zoo:$model" --from "$base" --data "$data" --limit "$LIMIT" --method depth --macs 1G \
      --epochs "$EPOCHS" --max-steps "$STEPS" --threads "$THREADS" --out "$d" >"$d.log" 2>&1
  done
  # The cost model's work of each side.
  "$M" analyze "zoo:$model" --json >"$OUT/$model.json"
  for h in "$OUT/$model-heads-1"/heads/*/last/model.json; do
    "$M" analyze "$h" --json >"$h.cost.json"
  done
  python3 - "$OUT" "$model" "$REPEATS" "$THREADS" "$STEPS" <<'PY'
import glob, json, os, statistics, sys
out, model, repeats, threads, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def counted(h):  # epochs after the first (warm-up)
    return [e["seconds"] for e in h[1:]] or [e["seconds"] for e in h]
plain, heads = [], []
for r in range(1, repeats + 1):
    plain += counted(json.load(open(f"{out}/{model}-plain-{r}/report.json"))["history"])
    heads += counted(json.load(open(f"{out}/{model}-heads-{r}/report.json"))["head_histories"][0][1])  # [row index, history] of the first head
ratios = [h / p for h, p in zip(heads, plain)]
full = json.load(open(f"{out}/{model}.json"))
layers = full["layers"]
macs = full["macs"]
# Work of a plain step: forward + kernel gradient + input gradient of every layer but the first.
first = next(l["cost"]["macs"] for l in layers if l["cost"]["macs"] > 0)
plain_work = 3 * macs - first
table = json.load(open(f"{out}/{model}-heads-1/report.json"))["table"]
head_files = sorted(glob.glob(f"{out}/{model}-heads-1/heads/*/last/model.json.cost.json"))
head_macs = [json.load(open(f))["macs"] for f in head_files]
deepest = max(table["rows"], key=lambda r: r["cut"]["node"])
trunk = deepest["cost"]["macs"] - head_macs[-1]
head_work = trunk + 3 * sum(head_macs)
print(f"{model}: {len(head_macs)} heads, {threads} thread(s), {steps} steps per epoch, {repeats} runs")
print(f"  plain epoch s: {' '.join(f'{x:.2f}' for x in plain)}  median {statistics.median(plain):.2f}")
print(f"  heads epoch s: {' '.join(f'{x:.2f}' for x in heads)}  median {statistics.median(heads):.2f}")
print(f"  ratio heads/plain: median {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
print(f"  work per image: plain {plain_work/1e6:.2f} M MACs (3 x {macs/1e6:.2f} M - stem {first/1e6:.2f} M); "
      f"heads {head_work/1e6:.2f} M (trunk forward {trunk/1e6:.2f} M + 3 x {sum(head_macs)/1e6:.2f} M of heads); "
      f"work ratio {head_work/plain_work:.2f}")
PY
done
echo "after: $(uptime)"
