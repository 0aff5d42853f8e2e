#!/usr/bin/env bash
# Issue 5 on real data: int8 export of three trained models, verified end to end.
#
#   ds-cnn             zoo:ds-cnn on Speech Commands v0.02 (test release, speaker-disjoint split)
#   resnet-8           zoo:resnet-8 on MNIST resized to 32x32, grey replicated to RGB (no CIFAR here)
#   mnist-ds-pruned    zoo:mnist-ds pruned (mcufit compress) to 2500 B RAM / 4500 B model size, the
#                      recipe that reaches 99 % (20-epoch base, 15 pruning + 25 fine-tune epochs)
#
# For each: float vs int8 test accuracy (`mcufit eval --int8`), then `mcufit export --verify`:
# TFLite Micro and the host-gcc C build against the int8 reference on 1,000 real inputs, TFLM arena
# vs predicted peak, C arena vs predicted peak, Cortex-M4 (QEMU mps2-an386) outputs and
# instructions/MAC (whole model, 1x1 convs, per op); then the C export linked for a board, and once
# for a RAM limit it cannot meet. Prints a markdown summary (bench/RESULTS.md, "int8 export").
#
# Usage: bench/export_real.sh [OUT_DIR]        (default runs/export; models there are reused)
# Data: $MCUFIT_DATASETS, else ../shared/datasets beside the repo, else /work/shared/datasets.
# Time on the 2-core box: training ~3 min (ds-cnn) + ~17 min (resnet-8) (+ ~8 min to make the pruned
# model if OUT_DIR lacks it: ~5 min base + ~7 min compress), then ~1 min (ds-cnn), ~7 min (resnet-8), ~1 min (pruned) of checks.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/export}"
data="${MCUFIT_DATASETS:-}"
if [ -z "$data" ]; then
    for d in ../shared/datasets /work/shared/datasets; do
        if [ -d "$d" ]; then data="$(cd "$d" && pwd)"; break; fi
    done
fi
if [ -z "$data" ] || [ ! -d "$data/mnist" ] || [ ! -d "$data/speech_commands_v0.02_test" ]; then
    echo "export_real.sh: need mnist/ and speech_commands_v0.02_test/ under \$MCUFIT_DATASETS or ../shared/datasets" >&2
    exit 2
fi
mkdir -p "$out"
log="$out/commands.log"
: > "$log"
run() { echo "+ $*" | tee -a "$log" >&2; "$@"; }

run cargo build --release -q -p mcufit-cli
bin=target/release/mcufit

# ---- models (reused when present) ----------------------------------------------------------------
if [ ! -f "$out/ds-cnn/weights.safetensors" ]; then
    run $bin train zoo:ds-cnn --data "speech-commands:$data/speech_commands_v0.02_test" \
        --epochs 12 --optimizer adam --threads 1 --out "$out/ds-cnn"
fi
if [ ! -f "$out/resnet-8/weights.safetensors" ]; then
    run $bin train zoo:resnet-8 --data "mnist:$data/mnist" --epochs 2 --threads 1 --out "$out/resnet-8"
fi
if [ ! -f "$out/mnist-ds-pruned/weights.safetensors" ]; then
    # The measured model came from an earlier driver (the same mcufit_prune::compress as the
    # CLI, split seed 0); this remakes one with the CLI.
    run $bin train zoo:mnist-ds --data "mnist:$data/mnist" --epochs 20 --out "$out/mnist-ds-base"
    run $bin compress zoo:mnist-ds --data "mnist:$data/mnist" --ram 2500 --flash 4500 --macs 30M \
        --epochs 40 --finetune-epochs 25 --from "$out/mnist-ds-base" --out "$out/mnist-ds-pruned"
fi

# ---- checks ----------------------------------------------------------------------------------------
for m in ds-cnn resnet-8 mnist-ds-pruned; do
    run $bin eval "$out/$m" --int8 | tee "$out/$m.eval-int8.txt"
    run $bin export "$out/$m" --format tflite --out "$out/$m.tflite" --verify --verify-inputs 1000 --m4-inputs 10 \
        --report "$out/$m.verify.json" | tee "$out/$m.verify.txt"
    run $bin export "$out/$m" --format c --out "$out/$m-c" --board nucleo-f411re | tee "$out/$m.c.txt"
done
# A board too small for resnet-8's 48 KiB arena: the C export must fail to link, saying so.
set +e
run $bin export "$out/resnet-8" --format c --out "$out/resnet-8-c-32k" --ram 32KiB --flash 512KiB \
    > "$out/resnet-8.c-32k.txt" 2>&1
status=$?
set -e
cat "$out/resnet-8.c-32k.txt"
echo "exit status $status (expected 1)"

# ---- summary -----------------------------------------------------------------------------------
python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
print("\n| model | data | MACs | float acc | int8 acc | TFLM vs ref | host C vs ref | M4 vs ref | "
      "predicted peak | TFLM arena (head / total) | C arena | M4 instr/MAC (all / 1x1) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for m in ["ds-cnn", "resnet-8", "mnist-ds-pruned"]:
    r = json.load(open(f"{out}/{m}.verify.json"))
    v = r["verify"]
    t, h, m4 = v["tflm"], v["c_host"], v["m4"]
    pw = m4["pointwise_instructions_per_mac"]
    print(f"| {m} | {r['data'].split(':')[0]} | {r['macs']/1e6:.2f} M | {100*v['float_accuracy']:.2f} % "
          f"({v['test_examples']}) | {100*v['int8_accuracy']:.2f} % | {t['mismatches']}/{t['inputs']} | "
          f"{h['mismatches']}/{h['inputs']} | {m4['agreement']['mismatches']}/{m4['agreement']['inputs']} | "
          f"{r['predicted_peak_bytes']} B | {v['tflm_arena']['head']} / {v['tflm_arena']['total']} B | "
          f"{r['c']['arena_bytes']} B (+{r['c']['scratch_bytes']} B scratch) | "
          f"{m4['instructions_per_mac']:.3f} / {'-' if pw is None else f'{pw:.3f}'} |")
EOF
