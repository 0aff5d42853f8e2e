#!/usr/bin/env bash
# Issue 13, item 3: every member of a search's Pareto front exported to .tflite and verified.
#
# For each member of OUT/pareto.json (model directories OUT/trials/ID): `mcufit export --format tflite
# --verify --verify-inputs 1000 --m4-inputs 10` under the search's own bounds (TFLite Micro and the
# host-gcc C build against the int8 reference on 1,000 real inputs, Cortex-M4 under QEMU on 10), then
# one markdown table: validation / test accuracy (float, from the search), int8 test accuracy, peak,
# weights, MACs, mismatches. The search's data set is read back from the trial directory.
#
# Usage: bench/search_fronts.sh SEARCH_OUT BOUND_FLAGS...
#   e.g. bench/search_fronts.sh /tmp/runs/search-mnist --peak 1700 --size 3000 --macs 20M
# Env:   MCUFIT (the binary; default: build and use target/release/mcufit).
# Time:  ~10 s per MNIST member, ~1 min per CIFAR-10 member (int8 accuracy on the whole test split).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bench/search_fronts.sh SEARCH_OUT BOUND_FLAGS...}"
shift
. bench/lib.sh
bench_mcufit
[ -f "$out/pareto.json" ] || { echo "search_fronts.sh: $out/pareto.json not found (run mcufit search --out $out first)" >&2; exit 2; }
mkdir -p "$out/verify"
ids=$(python3 -c 'import json,sys; print(" ".join(str(m["id"]) for m in json.load(open(sys.argv[1]))["front"]))' "$out/pareto.json")
for id in $ids; do
    dir="$out/trials/$id"
    echo "+ $M export $dir --format tflite --verify --verify-inputs 1000 --m4-inputs 10 $*" >&2
    "$M" export "$dir" --format tflite --out "$out/verify/$id.tflite" --force --verify --verify-inputs 1000 \
        --m4-inputs 10 --report "$out/verify/$id.json" "$@" > "$out/verify/$id.txt" 2>&1 \
        || echo "  trial $id: export/verify failed (see $out/verify/$id.txt)" >&2
done
python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
front = json.load(open(os.path.join(out, "pareto.json")))["front"]
print("| trial | architecture | val % | test % (float) | test % (int8) | peak B | weights B | MACs | TFLM mismatches | host C mismatches | M4 mismatches |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
bad = 0
for m in front:
    arch = m["architecture"].replace("|", "\\|")  # a literal | inside a markdown table cell
    p = os.path.join(out, "verify", f"{m['id']}.json")
    if not os.path.exists(p):
        bad += 1
        print(f"| {m['id']} | `{arch}` | {100*m['val_accuracy']:.2f} | {100*m['test_accuracy']:.2f} | export failed | | | | | | |")
        continue
    r = json.load(open(p))
    v = r["verify"]
    mism = [v["tflm"]["mismatches"], v["c_host"]["mismatches"], v["m4"]["agreement"]["mismatches"]]
    n = [v["tflm"]["inputs"], v["c_host"]["inputs"], v["m4"]["agreement"]["inputs"]]
    bad += sum(mism) > 0 or not r["fit"]["fits"]
    i8 = r["accuracy"]["int8"]["accuracy"]
    f = r["footprint"]
    print(f"| {m['id']} | `{arch}` | {100*m['val_accuracy']:.2f} | {100*m['test_accuracy']:.2f} | {100*i8:.2f} "
          f"| {f['arena']} | {f['weights']} | {r['macs']/1e6:.3f} M | {mism[0]} / {n[0]} | {mism[1]} / {n[1]} | {mism[2]} / {n[2]} |")
print(f"\n{len(front)} front members, {bad} with a mismatch, a failed export or over the bounds")
sys.exit(1 if bad else 0)
EOF
