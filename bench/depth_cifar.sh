#!/usr/bin/env bash
# Issue 11, Must show 3: CIFAR-10 (official split, ../shared/datasets/cifar10), resnet-8 and the 32x32x3
# mobilenet-v1-025, each trained once (BASE_EPOCHS), then pruned from that base to half its model
# bytes (int8 weights: params + int32 biases) and half its MACs by width, depth and depth+width with
# the same total epochs T:
#   width        compress --method width        --epochs T                  (prune + 30 % fine-tune)
#   depth        compress --method depth        --epochs T/2 --finetune-epochs T/2 (heads, then trunk+head)
#   depth+width  compress --method depth+width  --epochs T/2                (heads T/2, width-prune the cut T/2)
# One seed (the split's); test read once per final model. Prints one table row per method.
# Usage: bash bench/depth_cifar.sh            Env: BASE_EPOCHS (10), T (6), OUT (runs/depth-cifar),
#        MODELS ("resnet-8 mobilenet-v1-025-cifar"), THREADS (0 = all), MCUFIT_DATASETS (default
#        ../shared/datasets; CIFAR-10 in its cifar10/), MCUFIT (the binary; default: build and use
#        target/release/mcufit; a fixed copy keeps a rebuild of the tree meanwhile from mixing versions).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_data depth_cifar.sh cifar10/train cifar10/test
DATA="images:$data/cifar10"
BASE_EPOCHS=${BASE_EPOCHS:-10}
T=${T:-6}
HALF=$((T / 2))
OUT=${OUT:-runs/depth-cifar}
MODELS=${MODELS:-"resnet-8 mobilenet-v1-025-cifar"}
THREADS=${THREADS:-0}
bench_mcufit
mkdir -p "$OUT"
echo "load: $(uptime)"
for model in $MODELS; do
  base="$OUT/$model-base"
  if [ ! -f "$base/model.json" ]; then
    /usr/bin/time -f "%e s" -o "$OUT/$model-base.time" \
      "$M" train "zoo:$model" --data "$DATA" --epochs "$BASE_EPOCHS" --threads "$THREADS" --out "$base" \
      >"$OUT/$model-base.log" 2>&1
  fi
  read -r SIZE MACS < <("$M" analyze "$base" --json | python3 -c \
    'import json,sys; d=json.load(sys.stdin); print(int(d["model_bytes"]) // 2, int(d["macs"]) // 2)')
  budget=(--size "$SIZE" --macs "$MACS")
  run() { # name, flags...
    local name=$1; shift
    local dir="$OUT/$model-$name"
    if [ ! -f "$dir/model.json" ]; then
      /usr/bin/time -f "%e s" -o "$dir.time" "$M" compress "zoo:$model" --from "$base" --data "$DATA" \
        "${budget[@]}" --threads "$THREADS" --out "$dir" "$@" >"$dir.log" 2>&1 || { echo "$name failed: $dir.log"; }
    fi
  }
  run width --method width --epochs "$T"
  run depth --method depth --epochs "$HALF" --finetune-epochs "$HALF"
  run depth+width --method depth+width --epochs "$HALF"
done
python3 - "$OUT" "$MODELS" "$M" <<'PY'
import json, os, re, sys
out, models, mcufit = sys.argv[1], sys.argv[2].split(), sys.argv[3]
def acc(d):
    """(val, test) of the delivered model: the CLI's last "delivered" line for depth runs (their
    report.json holds the cut table), else report.json's figures."""
    log = d + ".log"
    if os.path.exists(log):
        for line in reversed(open(log, errors="replace").read().replace("\r", "\n").splitlines()):
            m = re.search(r"delivered: validation ([0-9.]+) %, test ([0-9.]+) %", line)
            if m:
                return float(m.group(1)) / 100, float(m.group(2)) / 100
    r = json.load(open(os.path.join(d, "report.json")))
    if "accuracy_after" in r:
        return r["accuracy_after"]["val"], r["accuracy_after"]["test"]
    return r.get("val_accuracy"), r.get("test_accuracy")
print("| model | method | val % | test % | params | model B | MACs | wall s |")
print("|---|---|---|---|---|---|---|---|")
for m in models:
    for name in ["base", "width", "depth", "depth+width"]:
        d = os.path.join(out, f"{m}-{name}")
        if not os.path.isfile(os.path.join(d, "model.json")):
            print(f"| {m} | {name} | failed or missing | | | | | |"); continue
        a = json.loads(os.popen(f"{mcufit} analyze {d} --json").read())
        v, t = acc(d)
        wall = open(d + ".time").read().split()[0] if os.path.exists(d + ".time") else "?"
        f = lambda x: "-" if x is None else f"{100 * x:.2f}"
        print(f"| {m} | {name} | {f(v)} | {f(t)} | {a['params']:.0f} | {a['model_bytes']:.0f} | {a['macs'] / 1e6:.2f} M | {wall} |")
PY
