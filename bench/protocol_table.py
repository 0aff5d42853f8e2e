"""The table of bench/protocol.sh: mean ± std over seeds per (setting, method) from results.jsonl,
with the test set's standard error sqrt(p(1-p)/n). Usage: protocol_table.py RESULTS.jsonl OUT.md"""
import json, math, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# l1 / tp with several LRs: per (setting, seed, method) keep the run with the best validation accuracy.
best = {}
for r in rows:
    k = (r["setting"], r["seed"], r["method"])
    if k not in best or r["val"] > best[k]["val"]:
        best[k] = r
n_test = {}
for r in rows:
    if r["method"] == "base":
        rep = json.load(open(f"{r['dir']}/report.json"))
        n_test[(r["setting"], r["seed"])] = rep["test_examples"]
groups = defaultdict(list)
for (s, seed, m), r in best.items():
    groups[(s, m)].append(r)
def ms(v):
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
    return m, sd
order = ["base", "compress", "l1", "tp", "uniform"]
out = ["| setting | method | seeds | epochs (base + further) | LR | val % (mean ± std) | test % (mean ± std) | test SE % | params | weight bytes | MACs | peak B | fits |",
       "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for (s, m) in sorted(groups, key=lambda k: (k[0], order.index(k[1]) if k[1] in order else 9)):
    rs = sorted(groups[(s, m)], key=lambda r: r["seed"])
    vm, vs = ms([100 * r["val"] for r in rs])
    tm, ts = ms([100 * r["test"] for r in rs])
    dk = "mnist" if s.startswith("mnist") else ("speech" if s.startswith("dscnn") else s)
    ns = [r.get("test_examples") or n_test.get((dk, r["seed"])) or n_test.get((s, r["seed"])) for r in rs]
    n = min(x for x in ns if x) if any(ns) else None
    p = tm / 100
    se = 100 * math.sqrt(p * (1 - p) / n) if n else float("nan")
    ep = f"{rs[0].get('base_epochs', 0)} + {rs[0]['epochs']}" if m != "base" else f"{rs[0]['epochs']}"
    lrs = ",".join(sorted({str(r.get("lr", "")) for r in rs}))
    rng = lambda k: (f"{min(r[k] for r in rs):.0f}" if min(r[k] for r in rs) == max(r[k] for r in rs)
                     else f"{min(r[k] for r in rs):.0f}–{max(r[k] for r in rs):.0f}")
    out.append(f"| {s} | {m} | {len(rs)} | {ep} | {lrs} | {vm:.2f} ± {vs:.2f} | {tm:.2f} ± {ts:.2f} | {se:.2f} (n={n}) | "
               f"{rng('params')} | {rng('model_bytes')} | {rng('macs')} | {rng('peak')} | {all(r['fits'] for r in rs)} |")
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
