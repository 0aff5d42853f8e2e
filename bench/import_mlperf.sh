#!/usr/bin/env bash
# Bring your own model (issue 14): the MLPerf Tiny reference .tflite files through mcufit.
# Figures in bench/RESULTS.md, "Bring your own model (issue 14)". Usage: bash bench/import_mlperf.sh [OUT]
# Env: MCUFIT (binary), MCUFIT_DATASETS (default ../shared/datasets; the models in ../models/mlperf-tiny
# beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_data import_mlperf.sh speech_commands_v0.02_test cifar10/train ../models/mlperf-tiny
D=$data
bench_mcufit
B=$M
M=$D/../models/mlperf-tiny
OUT=${1:-runs/import-mlperf}
mkdir -p "$OUT"
SC="speech-commands:$D/speech_commands_v0.02_test"
CIFAR="images:$D/cifar10"
# 1. analyze (cost model, memory-optimal order)
$B analyze $M/kws_ref_model.tflite | tee "$OUT/analyze-kws.txt"
$B analyze $M/pretrainedResnet_quant.tflite | tee "$OUT/analyze-resnet.txt"
# 2. C export run on 1,000 real inputs against the int8 reference, TFLM on mcufit's .tflite and on the original file
nice -n 5 $B export $M/kws_ref_model.tflite --format c --out "$OUT/kws-c" --force --verify --verify-inputs 1000 --data "$SC" | tee "$OUT/export-kws.txt"
nice -n 5 $B export $M/pretrainedResnet_quant.tflite --format c --out "$OUT/resnet-c" --force --verify --verify-inputs 1000 --data "$CIFAR" | tee "$OUT/export-resnet.txt"
$B export $M/kws_ref_model.tflite --format tflite --out "$OUT/kws.tflite" --force | tee -a "$OUT/export-kws.txt"
$B export $M/pretrainedResnet_quant.tflite --format tflite --out "$OUT/resnet.tflite" --force | tee -a "$OUT/export-resnet.txt"
# 3. accuracy through the bit-exact int8 reference
nice -n 5 $B eval $M/kws_ref_model.tflite --data "$SC" --split all | tee "$OUT/eval-kws.txt"
nice -n 5 $B eval $M/pretrainedResnet_quant.tflite --data "$CIFAR" | tee "$OUT/eval-resnet.txt"
