#!/usr/bin/env bash
# The evaluation protocol of issue 16 ("Honest evaluation"), through the mcufit command (the code path a
# user gets) and, for the outside peer, bench/torch_pruning_peer.py (Torch-Pruning on the same base).
#
# For each SETTING and each seed S in SEEDS:
#   base      mcufit train MODEL --epochs BASE_EPOCHS --seed S                (shared by the settings of a data set)
#   compress  mcufit compress --method width --from base --epochs E [--finetune-epochs COMPRESS_FT] --seed S
#   l1        mcufit compress --method l1    --from base --epochs E --lr FT_LR --seed S
#   tp        torch_pruning_peer.py          --base base --epochs E --lr FT_LR --seed S (Torch-Pruning)
#   uniform   mcufit compress --method uniform (from scratch) --epochs BASE_EPOCHS+E --seed S
# Every run: SGD momentum 0.9, weight decay 5e-4 on kernels, batch 64, per-step cosine LR (the
# CLI's defaults; see bench/PROTOCOL.md for where each method sets its LR), the epoch kept by
# validation accuracy. With several values in FT_LRS, l1 and tp run once per LR and the one with
# the best validation accuracy is kept (selection on validation only). The test split is read
# once per final model: by the run itself at its end (mcufit) or by `mcufit eval` (tp).
# Resources of every final model: `mcufit analyze DIR BUDGET --json`.
#
# Output: $RUNS/results.jsonl (one line per run) and $RUNS/results.md (mean ± std over seeds, with the
# test set's standard error sqrt(p(1-p)/n)). Finished runs (report.json present) are not redone.
#
# Env: SETTINGS ("mnist-unas mnist-tight dscnn-half"), SEEDS ("1 2 3"), RUNS (/tmp/protocol),
#      MCUFIT_DATASETS (../shared/datasets), THREADS (1), LR (0.05), FT_LRS ("$LR $LR/2": l1 and tp fine-tune LRs, best on val),
#      LIMIT (samples per split, for smoke runs; unset = all),
#      MNIST_BASE_EPOCHS (20), MNIST_E (40), MNIST_COMPRESS_FT (25)   [fit's default schedule: 20 + 15 + 25]
#      DSCNN_BASE_EPOCHS (30), DSCNN_E (20), DSCNN_COMPRESS_FT (unset: compress's default, 30 % of E)
#      BASE_EPOCHS / E / COMPRESS_FT: override both data sets (smoke: BASE_EPOCHS=1 E=2 LIMIT=2000 SEEDS=1)
#      TP_VARIANTS (l2-local,l2-global,bn-global), TP_STEPS (400), METHODS ("compress l1 tp uniform"),
#      TP_CHECK=1: the peer first checks its model-file round trip on the base (bench/torch_pruning_peer.py)
#      MCUFIT / DUMP_SPLITS: prebuilt binaries to use instead of building them here
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SETTINGS=${SETTINGS:-"mnist-unas mnist-tight dscnn-half"}
SEEDS=${SEEDS:-"1 2 3"}
RUNS=${RUNS:-/tmp/protocol}
bench_data protocol.sh
SHARED=$data
THREADS=${THREADS:-1}
LR=${LR:-0.05}
FT_LRS=${FT_LRS:-"$LR $(awk "BEGIN { print $LR / 2 }")"}   # LR and compress's fine-tune LR (LR / 2)
METHODS=${METHODS:-"compress l1 tp uniform"}
TP_VARIANTS=${TP_VARIANTS:-l2-local,l2-global,bn-global}
TP_STEPS=${TP_STEPS:-400}
TP_EXTRA=()
[ -n "${TP_CHECK:-}" ] && TP_EXTRA=(--check-roundtrip)
LIMIT_ARGS=()
[ -n "${LIMIT:-}" ] && LIMIT_ARGS=(--limit "$LIMIT")
PY=.venv-torch/bin/python
X=${MCUFIT:-target/release/mcufit}
DUMP=${DUMP_SPLITS:-target/release/examples/dump_splits}

if [ ! -x "$PY" ] || ! "$PY" -c "import torch, numpy, torch_pruning, onnx" 2>/dev/null; then
  echo "creating .venv-torch (PyTorch, Torch-Pruning, onnx from PyPI)"
  python3 -m venv .venv-torch
  .venv-torch/bin/pip install -q torch numpy torch-pruning onnx
fi
if [ -z "${MCUFIT:-}" ]; then
  cargo build --release -q -p mcufit-cli
fi
if [ -z "${DUMP_SPLITS:-}" ]; then
  cargo build --release -q -p mcufit-pipeline --example dump_splits
fi
mkdir -p "$RUNS"
RESULTS=$RUNS/results.jsonl
T0=$SECONDS

setting() {  # sets MODEL DATA DATAKEY BUDGET BASE_E FURTHER_E CFT for setting $1
  case $1 in
    mnist-unas|mnist-tight)
      MODEL=zoo:mnist-ds; DATA=mnist:$SHARED/mnist; DATAKEY=mnist
      BASE_E=${BASE_EPOCHS:-${MNIST_BASE_EPOCHS:-20}}; FURTHER_E=${E:-${MNIST_E:-40}}
      CFT=${COMPRESS_FT:-${MNIST_COMPRESS_FT:-25}}
      if [ "$1" = mnist-unas ]; then BUDGET=(--peak 2500 --size 4500 --macs 30M)   # μNAS's bounds
      else BUDGET=(--peak 1700 --size 3000 --macs 20M); fi                         # 1.5x tighter
      ;;
    dscnn-half)  # DS-CNN at half its peak (16,000 -> 8,000 B) and half its MACs (2,656,768 -> 1,328,384)
      MODEL=zoo:ds-cnn; DATA=speech-commands:$SHARED/speech_commands_v0.02_test; DATAKEY=speech
      BASE_E=${BASE_EPOCHS:-${DSCNN_BASE_EPOCHS:-30}}; FURTHER_E=${E:-${DSCNN_E:-20}}
      CFT=${COMPRESS_FT:-${DSCNN_COMPRESS_FT:-}}
      BUDGET=(--peak 8000 --macs 1328384)
      ;;
    *) echo "unknown setting $1" >&2; exit 2 ;;
  esac
  if [ -n "$CFT" ] && [ "$CFT" -ge "$FURTHER_E" ]; then CFT=$(( FURTHER_E / 2 > 0 ? FURTHER_E / 2 : 1 )); fi
}

# One line of results.jsonl for a finished run directory.
record() {  # setting seed method dir extra-json
  local fig m=$4
  [ -f "$4/model/model.json" ] && m=$4/model   # the peer's model directory
  fig=$("$X" analyze "$m" "${BUDGET[@]}" --json || true)
  "$PY" - "$1" "$2" "$3" "$4" "$5" "$fig" >>"$RESULTS" <<'PY'
import json, sys
setting, seed, method, d, extra, fig = sys.argv[1:7]
rep = json.load(open(f"{d}/report.json"))
a = json.loads(fig)
if method == "compress":
    val, test = rep["accuracy_after"]["val"], rep["accuracy_after"]["test"]
elif method in ("l1", "uniform"):
    val, test = rep["val_accuracy"], rep["test_accuracy"]
elif method == "tp":
    val, test = rep["val_accuracy"], rep["test_accuracy"]
else:  # base
    val, test = rep["val_accuracy"], rep["test_accuracy"]
row = {"setting": setting, "seed": int(seed), "method": method, "dir": d, "val": val, "test": test,
       "params": a["params"], "model_bytes": a["model_bytes"], "macs": a["macs"], "peak": a["peak_memory_bytes"],
       "fits": a["fit"]["fits"], **json.loads(extra)}
if method == "tp":
    row.update(tp_variant=rep["variant"], tp_peak_extra_steps=rep["peak_extra_steps"],
               tp_onnx_same_as_dir=rep["onnx"]["same_as_dir"], test_examples=rep["test_examples"])
print(json.dumps(row))
PY
}

timed() {  # label cmd...: runs cmd, prints and returns its wall time in LAST_S
  local t=$SECONDS
  "${@:2}"
  LAST_S=$(( SECONDS - t ))
  echo "[$1] $(( LAST_S )) s" >&2
}

for S in $SEEDS; do
  for SET in $SETTINGS; do
    setting "$SET"
    CARGS=(--data "$DATA" --seed "$S" --threads "$THREADS" "${LIMIT_ARGS[@]}")
    BASE=$RUNS/$DATAKEY-base-e$BASE_E-s$S
    if [ ! -f "$BASE/report.json" ]; then
      rm -rf "$BASE"
      timed "$DATAKEY base s$S" "$X" train "$MODEL" "${CARGS[@]}" --epochs "$BASE_E" --lr "$LR" --out "$BASE"
      record "$DATAKEY" "$S" base "$BASE" "{\"epochs\": $BASE_E, \"seconds\": $LAST_S}"
    fi
    OUT=$RUNS/$SET-s$S
    mkdir -p "$OUT"
    for M in $METHODS; do
      case $M in
        compress)
          D=$OUT/compress
          [ -f "$D/report.json" ] && continue
          rm -rf "$D"
          FT_ARGS=(); [ -n "$CFT" ] && FT_ARGS=(--finetune-epochs "$CFT")
          timed "$SET compress s$S" "$X" compress "$MODEL" "${CARGS[@]}" "${BUDGET[@]}" --method width --from "$BASE" \
            --epochs "$FURTHER_E" "${FT_ARGS[@]}" --lr "$LR" --out "$D" >/dev/null
          record "$SET" "$S" compress "$D" "{\"epochs\": $FURTHER_E, \"base_epochs\": $BASE_E, \"lr\": $LR, \"seconds\": $LAST_S}"
          ;;
        uniform)
          D=$OUT/uniform
          [ -f "$D/report.json" ] && continue
          rm -rf "$D"
          timed "$SET uniform s$S" "$X" compress "$MODEL" "${CARGS[@]}" "${BUDGET[@]}" --method uniform \
            --epochs $(( BASE_E + FURTHER_E )) --lr "$LR" --out "$D" >/dev/null
          record "$SET" "$S" uniform "$D" "{\"epochs\": $(( BASE_E + FURTHER_E )), \"base_epochs\": 0, \"lr\": $LR, \"seconds\": $LAST_S}"
          ;;
        l1|tp)
          for FLR in $FT_LRS; do
            D=$OUT/$M-lr$FLR
            [ -f "$D/report.json" ] && continue
            rm -rf "$D"
            if [ "$M" = l1 ]; then
              timed "$SET l1 lr$FLR s$S" "$X" compress "$MODEL" "${CARGS[@]}" "${BUDGET[@]}" --method l1 --from "$BASE" \
                --epochs "$FURTHER_E" --lr "$FLR" --out "$D" >/dev/null
            else
              SPL=$RUNS/$DATAKEY-splits-s$S-e$FURTHER_E
              if [ ! -f "$SPL/meta.json" ]; then
                timed "$DATAKEY dump s$S" "$DUMP" --model "$MODEL" --data "$DATA" --seed "$S" "${LIMIT_ARGS[@]}" \
                  --epochs "$FURTHER_E" --batch 64 --out "$SPL" >/dev/null
              fi
              timed "$SET tp lr$FLR s$S" "$PY" bench/torch_pruning_peer.py --base "$BASE" --splits "$SPL" \
                "${BUDGET[@]}" --epochs "$FURTHER_E" --lr "$FLR" --seed "$S" --threads "$THREADS" \
                --variants "$TP_VARIANTS" --steps "$TP_STEPS" --mcufit "$X" "${TP_EXTRA[@]}" --out "$D" >/dev/null
            fi
            record "$SET" "$S" "$M" "$D" "{\"epochs\": $FURTHER_E, \"base_epochs\": $BASE_E, \"lr\": $FLR, \"seconds\": $LAST_S}"
          done
          ;;
        *) echo "unknown method $M" >&2; exit 2 ;;
      esac
    done
  done
done
echo "protocol wall time: $(( SECONDS - T0 )) s" >&2

"$PY" bench/protocol_table.py "$RESULTS" "$RUNS/results.md"
