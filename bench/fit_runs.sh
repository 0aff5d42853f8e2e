#!/usr/bin/env bash
# The `mcufit fit` runs behind bench/RESULTS.md (issue 10): the command a new user types, no other flags
# (the resnet-8 run adds --time-budget where the machine cannot give it the full recipe in one session).
# Datasets: $MCUFIT_DATASETS (default ../shared/datasets); binary: $MCUFIT (default: built here).
# Outputs go to $RUNS; each run's wall time is printed at its end.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${RUNS:-/tmp/runs}
bench_data fit_runs.sh mnist speech_commands_v0.02_test cifar10/train
SHARED=$data
bench_mcufit
X=$M
mkdir -p "$RUNS"
timed() { local t=$SECONDS; "$@"; echo "wall $(( SECONDS - t )) s: $*"; }

# The README's main job (built-in digits, a board with 8 KiB SRAM / 64 KiB flash).
timed $X fit zoo:mnist-ds --board nucleo-g031k8 --out "$RUNS/quickstart"
# MNIST at the μNAS bounds (paper counting: activation peak and weight bytes alone).
timed $X fit zoo:mnist-ds --data mnist:$SHARED/mnist --peak 2500 --size 4500 --macs 30M --out "$RUNS/fit-mnist"
# DS-CNN on Speech Commands at half its peak (16,000 B) and half its MACs (2,656,768).
timed $X fit zoo:ds-cnn --data speech-commands:$SHARED/speech_commands_v0.02_test --peak 8000 --macs 1328384 --out "$RUNS/fit-dscnn"
# ResNet-8 on CIFAR-10 (official train/test folders) at half its peak (49,152 B) and half its MACs (12,501,632).
# The full default recipe takes ~2.5 h on 2 cores. The recorded run: RESNET_EPOCHS=9,2,3 (a 9-epoch base from a
# --time-budget 60m run, then 2 pruning + 3 fine-tune epochs; see bench/RESULTS.md).
timed $X fit zoo:resnet-8 --data images:$SHARED/cifar10 --peak 24576 --macs 6250816 --out "$RUNS/fit-resnet8" ${RESNET_EPOCHS:+--epochs $RESNET_EPOCHS}
