#!/usr/bin/env bash
# Issue 16, Must show 2: the cost of pruning during training, both ways. A pruning-phase epoch
# of `mcufit compress` (masks learned, salience, the budget loss and its memory-order re-solves)
# over a plain training epoch of the same model on the same data, threads and steps:
#   scratch  compress without --from (no warm-up, so every epoch before the fine-tune prunes)
#   from     compress --from a trained base (the mode every accuracy result uses)
# Interleaved (plain, scratch, from) REPEATS times; per-epoch training seconds from each run's
# report (`history[].seconds`, validation excluded), the first epoch of every run dropped as
# warm-up. Prints median [min-max] per side and the ratios.
# Usage: bash bench/overhead.sh   Env: REPEATS (3), THREADS (1), STEPS (100), EPOCHS (4), MODELS,
# MCUFIT (binary), MCUFIT_DATASETS (default ../shared/datasets).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
REPEATS=${REPEATS:-3}
THREADS=${THREADS:-1}
STEPS=${STEPS:-100}
EPOCHS=${EPOCHS:-4}
MODELS=${MODELS:-"mnist-ds ds-cnn"}
bench_data overhead.sh mnist speech_commands_v0.02_test
SHARED=$data
bench_mcufit
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "before: $(uptime)"
for model in $MODELS; do
  case $model in
    ds-cnn) data="speech-commands:$SHARED/speech_commands_v0.02_test"; budget=(--peak 8000 --macs 1328384) ;;
    *) data="mnist:$SHARED/mnist"; budget=(--peak 2500 --size 4500 --macs 30M) ;;
  esac
  common=(--data "$data" --epochs "$EPOCHS" --max-steps "$STEPS" --threads "$THREADS")
  base="$OUT/$model-base"
  "$M" train "zoo:$model" "${common[@]}" --out "$base" >/dev/null 2>&1
  for r in $(seq 1 "$REPEATS"); do
    "$M" train "zoo:$model" "${common[@]}" --out "$OUT/$model-plain-$r" >/dev/null 2>&1
    "$M" compress "zoo:$model" "${common[@]}" "${budget[@]}" --method width --warmup-epochs 0 \
      --finetune-epochs 0 --out "$OUT/$model-scratch-$r" >/dev/null 2>&1
    "$M" compress "zoo:$model" "${common[@]}" "${budget[@]}" --method width --from "$base" \
      --finetune-epochs 0 --out "$OUT/$model-from-$r" >/dev/null 2>&1
  done
  python3 - "$OUT" "$model" "$REPEATS" "$THREADS" "$STEPS" <<'PY'
import json, statistics, sys
out, model, repeats, threads, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def epochs(kind):
    xs = []
    for r in range(1, repeats + 1):
        rep = json.load(open(f"{out}/{model}-{kind}-{r}/report.json"))
        h = rep["history"]
        if kind != "plain":  # the pruning epochs: after the warm-up, before the fine-tune
            w, p, _ = rep["epochs"]
            h = h[w:w + p]
        xs += [e["seconds"] for e in h[1:]]
    return xs
plain = epochs("plain")
print(f"{model}: {threads} thread(s), {steps} steps per epoch, {repeats} interleaved runs, first epoch of each dropped")
fmt = lambda xs: f"median {statistics.median(xs):.3f} s [{min(xs):.3f}-{max(xs):.3f}] (n={len(xs)})"
print(f"  plain epoch:               {fmt(plain)}")
for kind, what in (("scratch", "from scratch"), ("from", "--from a base")):
    xs = epochs(kind)
    print(f"  pruning epoch, {what:14s} {fmt(xs)}  ratio {statistics.median(xs) / statistics.median(plain):.2f}x "
          f"[{min(xs) / max(plain):.2f}-{max(xs) / min(plain):.2f}]")
PY
done
echo "after: $(uptime)"
