#!/usr/bin/env python3
"""An outside peer for `mcufit compress`: Torch-Pruning (pip `torch-pruning`) prunes the same trained
base, to the same budget, fine-tunes it with mcufit's recipe, and mcufit measures the result.

Steps (issue 16, "an outside peer"):
1. the trained base (an mcufit model directory: model.json + weights.safetensors + data.json) is built
   in PyTorch by bench/torch_ir.py with mcufit's weights;
2. Torch-Pruning's MetaPruner removes channels iteratively (each VARIANT: an importance criterion and
   local or global ranking; the classifier is never pruned) until `mcufit analyze` says the model fits
   the budget (--peak / --size / --macs, mcufit's exact cost model). Steps taken after MACs and weight
   bytes already fit, for the peak alone, are counted and reported (`peak_extra_steps`). Among the
   variants the one with the best validation accuracy right after pruning is fine-tuned (validation only);
3. fine-tuning uses mcufit's training recipe (mcufit-train TrainConfig and the CLI's defaults):
   SGD momentum 0.9 (no dampening, no Nesterov), L2 weight decay 5e-4 on conv/dense kernels only,
   batch 64, per-step cosine decay from --lr to 0 over all steps, cross-entropy on the logits,
   BN momentum 0.1; the batches are exactly the ones mcufit's trainer draws for this seed (the
   `order_E.npy` written by the dump_splits example), with mcufit's own augmentation
   (`train_x_aug_E.npy`) where the data set augments; the epoch with the best validation
   accuracy is kept (as mcufit's trainer does);
4. the result is written as an mcufit model directory (OUT/model: model.json with the pruned widths,
   weights.safetensors in mcufit's layouts, data.json = the base's data and seed) and as ONNX
   (OUT/model.onnx); `mcufit analyze` measures both (they must agree), and `mcufit eval OUT/model`
   reads the test split, once, at the very end. The peer itself never sees the test split (the
   dump holds train and validation only).

Why accuracy comes from the model directory and not `mcufit eval model.onnx`: mcufit takes an imported
float model to expect *raw* features (pixels 0..255, un-standardized MFCC) and puts an input adapter in
front; this model was trained on mcufit's encoded features, and the ONNX subset mcufit imports has no
op that could undo the encoding inside the file for speech (a per-coefficient scale along the width
axis needs a Transpose or Sub/Div; mcufit imports Reshape only as a flatten). Resources come from both.

Usage:
  python bench/torch_pruning_peer.py --base RUN/base --splits DUMP --peak 2500 --size 4500 --macs 30M \
      --epochs 25 --lr 0.05 --out RUN/tp [--mcufit target/release/mcufit] [--threads 1] \
      [--variants l2-local,l2-global,bn-global] [--steps 100]
Prints one JSON line with every figure and writes it to OUT/report.json.
"""
import argparse
import copy
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ir  # noqa: E402


class AnyBN(nn.modules.batchnorm._BatchNorm):
    """torch_ir's BatchNorm as a torch `_BatchNorm` (so Torch-Pruning prunes it with its producer):
    the same F.batch_norm call, over [N, C] or [N, C, H, W]."""

    def _check_input_dim(self, x):
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2-D or 4-D input, got {x.dim()}-D")


def swap_bn(net):
    for k, m in list(net.layers.items()):
        if isinstance(m, torch_ir.BatchNorm):
            bn = AnyBN(m.weight.numel(), eps=m.eps, momentum=0.1)
            with torch.no_grad():
                bn.weight.copy_(m.weight)
                bn.bias.copy_(m.bias)
                bn.running_mean.copy_(m.running_mean)
                bn.running_var.copy_(m.running_var)
            net.layers[k] = bn
    return net


def classifier_keys(net):
    """The dense layer(s) producing the logits: never pruned (their outputs are the classes)."""
    return [net.key(net.logits)] if net.nodes[net.logits]["op"] == "dense" else []


def model_json(net, base_model):
    """The base's model file with the pruned widths (conv filters, dense units)."""
    m = copy.deepcopy(base_model)
    for i, n in enumerate(m["nodes"]):
        if n["op"] == "conv2d":
            layer = net.layers[net.key(i)]
            if layer.groups != 1 or n.get("groups", 1) != 1:
                raise ValueError(f"{n['name']}: grouped convolutions are not handled")
            n["filters"] = layer.out_channels
        elif n["op"] == "dense":
            n["units"] = net.layers[net.key(i)].out_features
    return m


def save_safetensors(tensors, path):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def weights_of(net):
    """mcufit's weight names and layouts (the inverse of torch_ir.load_weights)."""
    out = {}
    for i, n in enumerate(net.nodes):
        name, op = n["name"], n["op"]
        if op in ("conv2d", "depthwise_conv2d", "dense"):
            layer = net.layers[net.key(i)]
            k = layer.weight.detach()
            if op == "conv2d":
                k = k.permute(0, 2, 3, 1)  # OIHW -> OHWI
            elif op == "depthwise_conv2d":
                k = k.permute(1, 2, 3, 0)  # [c, 1, kh, kw] -> [1, kh, kw, c]
            out[f"{name}.kernel"] = k.contiguous().numpy()
            if layer.bias is not None:
                out[f"{name}.bias"] = layer.bias.detach().numpy()
        elif op == "batch_norm":
            bn = net.layers[net.key(i)]
            out[f"{name}.bn.gamma"] = bn.weight.detach().numpy()
            out[f"{name}.bn.beta"] = bn.bias.detach().numpy()
            out[f"{name}.bn.mean"] = bn.running_mean.detach().numpy()
            out[f"{name}.bn.var"] = bn.running_var.detach().numpy()
    return out


def refresh(net, base_model):
    """Re-derive the module's node list from its (pruned) layers so torch_ir's bookkeeping holds."""
    net.nodes = model_json(net, base_model)["nodes"]
    return net


def write_dir(net, base_model, data_record, d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump(model_json(net, base_model), f, indent=1)
    save_safetensors(weights_of(net), os.path.join(d, "weights.safetensors"))
    with open(os.path.join(d, "data.json"), "w") as f:
        json.dump(data_record, f)


def fold_constants(path):
    """Folds every node whose inputs are all constants into an initializer, in place; returns how many.

    torch.onnx.export (2.15, TorchScript exporter) writes F.pad / nn.ZeroPad2d's pads as a
    ConstantOfShape -> Concat -> Reshape -> Slice -> Transpose -> Reshape -> Cast chain on constants,
    which mcufit's importer does not evaluate (it imports Pad with constant pads); folded here with
    onnx's reference evaluator, the file holds a plain Pad."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    m = onnx.load(path)
    g = m.graph
    const = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    kept, folded = [], 0
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul", "BatchNormalization") and \
                all(i == "" or i in const for i in n.input):
            outs = ReferenceEvaluator(n).run(None, {i: const[i] for i in n.input if i})
            for name, v in zip(n.output, outs):
                const[name] = np.asarray(v)
            folded += 1
        else:
            kept.append(n)
    used = {i for n in kept for i in n.input} | {o.name for o in g.output}
    init_names = {i.name for i in g.initializer}
    new_inits = [numpy_helper.from_array(const[k], k) for k in const if k in used and k not in init_names]
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(new_inits)
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return folded


def budget_args(a):
    out = []
    for flag, v in (("--peak", a.peak), ("--size", a.size), ("--macs", a.macs)):
        if v is not None:
            out += [flag, str(v)]
    return out


def analyze(mcufit, target, budget):
    """`mcufit analyze TARGET BUDGET --json`: (figures, fits, rows that do not fit)."""
    p = subprocess.run([mcufit, "analyze", target, *budget, "--json"], capture_output=True, text=True)
    if p.returncode not in (0, 1):
        raise RuntimeError(f"mcufit analyze {target} failed ({p.returncode}): {p.stderr.strip()}")
    a = json.loads(p.stdout)
    fig = {"params": a["params"], "model_bytes": a["model_bytes"], "macs": a["macs"],
           "peak_memory": a["peak_memory_bytes"], "peak_exact": a["peak_memory_exact"]}
    over = [r["resource"] for r in a["fit"]["rows"] if r["limit"] is not None and not r["fits"]]
    return fig, a["fit"]["fits"], over


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def accuracy(net, x, y, batch=256):
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += int((net(nchw(x[i:i + batch])).argmax(1) == y[i:i + batch]).sum())
    return correct / max(len(y), 1)


IMPORTANCE = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "bn": lambda: tp.importance.BNScaleImportance(),
    "lamp": lambda: tp.importance.LAMPImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(),
}


def prune_to_budget(net, base_model, variant, args, work):
    """Iterative Torch-Pruning until mcufit's cost model says the model fits. Returns a record."""
    imp_name, scope = variant.split("-")
    ignored = [net.layers[k] for k in classifier_keys(net)]
    h, w, c = net.input_shape()
    example = torch.randn(1, c, h, w)
    net.eval()
    pruner = tp.pruner.MetaPruner(
        net, example, importance=IMPORTANCE[imp_name](), global_pruning=(scope == "global"),
        pruning_ratio=args.max_ratio, iterative_steps=args.steps, ignored_layers=ignored)
    budget = budget_args(args)
    no_peak = [x for x in budget]
    if args.peak is not None:
        i = no_peak.index("--peak")
        del no_peak[i:i + 2]
    path = os.path.join(work, f"{variant}.json")
    step, met_mp = 0, None
    fig, fits, over = None, False, []
    while step < args.steps:
        pruner.step()
        step += 1
        refresh(net, base_model)
        with open(path, "w") as f:
            json.dump(model_json(net, base_model), f)
        fig, fits, over = analyze(args.mcufit, path, budget)
        if met_mp is None and not [r for r in over if r != "peak activations"]:
            met_mp = step
        if fits:
            break
    if not fits:
        raise RuntimeError(f"{variant}: still over the budget ({over}) after {step} steps of "
                           f"{args.max_ratio / args.steps:.4f}")
    return {"variant": variant, "steps": step, "ratio": args.max_ratio * step / args.steps,
            "steps_when_macs_and_size_fit": met_mp, "peak_extra_steps": step - (met_mp or step),
            "resources": fig}


def finetune(net, data, args):
    """mcufit's recipe on mcufit's batches; returns (best network by validation, history)."""
    torch.manual_seed(args.seed)
    kernels = [m.weight for m in net.layers.values() if isinstance(m, (nn.Conv2d, nn.Linear))]
    ids = {id(p) for p in kernels}
    others = [p for p in net.parameters() if id(p) not in ids]
    opt = torch.optim.SGD([{"params": kernels, "weight_decay": args.weight_decay},
                           {"params": others, "weight_decay": 0.0}],
                          lr=args.lr, momentum=0.9, dampening=0.0, nesterov=False)
    bs = args.batch
    orders = [np.load(os.path.join(args.splits, f"order_{e}.npy")).astype(np.int64) for e in range(args.epochs)]
    spe = max(len(orders[0]) // bs, 1)
    total = spe * args.epochs
    vx, vy = data["val_x"], torch.from_numpy(data["val_y"])
    best, best_acc, best_epoch, hist, step = None, None, None, [], 0
    for e in range(args.epochs):
        aug = os.path.join(args.splits, f"train_x_aug_{e}.npy")
        x = np.load(aug) if os.path.exists(aug) else data["train_x"]
        y = data["train_y"]
        order = orders[e]
        net.train()
        loss_sum, seen, t0 = 0.0, 0, time.time()
        for b in range(len(order) // bs if len(order) >= bs else 1):
            idx = order[b * bs:(b + 1) * bs]
            lr = 0.5 * args.lr * (1.0 + math.cos(math.pi * min(step / total, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr
            xb, yb = nchw(x[idx]), torch.from_numpy(y[idx])
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            step += 1
        va = accuracy(net, vx, vy)
        hist.append({"epoch": e + 1, "loss": loss_sum / max(seen, 1), "val_accuracy": va,
                     "seconds": time.time() - t0})
        print(f"tp fine-tune epoch {e + 1}/{args.epochs}: loss {loss_sum / max(seen, 1):.4f} val {100 * va:.2f}%",
              file=sys.stderr)
        if best_acc is None or va > best_acc:
            best_acc, best_epoch, best = va, e + 1, copy.deepcopy(net)
    return best, best_acc, best_epoch, hist


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="trained mcufit model directory")
    ap.add_argument("--splits", required=True, help="directory written by the dump_splits example")
    ap.add_argument("--out", required=True)
    ap.add_argument("--peak")
    ap.add_argument("--size")
    ap.add_argument("--macs")
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default="l2-local,l2-global,bn-global",
                    help="IMPORTANCE-SCOPE,...: importance l1|l2|bn|lamp|fpgm, scope local|global")
    ap.add_argument("--steps", type=int, default=400, help="iterative pruning steps up to --max-ratio")
    ap.add_argument("--max-ratio", type=float, default=0.99)
    ap.add_argument("--mcufit", default="target/release/mcufit")
    ap.add_argument("--check-roundtrip", action="store_true",
                    help="first check that the base written back by this script evaluates as mcufit's own base")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_all = time.time()
    os.makedirs(args.out, exist_ok=True)
    work = os.path.join(args.out, "candidates")
    os.makedirs(work, exist_ok=True)

    base_model = json.load(open(os.path.join(args.base, "model.json")))
    data_record = json.load(open(os.path.join(args.base, "data.json")))
    meta = json.load(open(os.path.join(args.splits, "meta.json")))
    if meta["seed"] != data_record["seed"] or meta["data"] != data_record["spec"]:
        sys.exit(f"the dump ({meta['data']}, seed {meta['seed']}) is not the base's data "
                 f"({data_record['spec']}, seed {data_record['seed']})")
    if meta["epochs"] < args.epochs or meta["batch"] != args.batch:
        sys.exit(f"the dump has {meta['epochs']} epochs of batch {meta['batch']}; need {args.epochs} of {args.batch}")
    data = {k: np.load(os.path.join(args.splits, f"{k}.npy")) for k in ("train_x", "train_y", "val_x", "val_y")}
    data["train_y"] = data["train_y"].astype(np.int64)
    data["val_y"] = data["val_y"].astype(np.int64)

    def load_base():
        net = torch_ir.IRModule(base_model)
        torch_ir.load_weights(net, os.path.join(args.base, "weights.safetensors"))
        return swap_bn(net)

    base = load_base()
    roundtrip = None
    if args.check_roundtrip:
        # The unpruned base written back by this script must score exactly what mcufit's own base does
        # (a check of the weight/model-file round trip; it reads the base's test split, not the result's).
        rt = os.path.join(args.out, "roundtrip")
        write_dir(base, base_model, data_record, rt)
        evs = []
        for d in (args.base, rt):
            p = subprocess.run([args.mcufit, "eval", d, "--json"], capture_output=True, text=True, check=True)
            evs.append(json.loads(p.stdout))
        roundtrip = {"base": evs[0]["accuracy"], "written_back": evs[1]["accuracy"],
                     "loss_diff": abs(evs[0]["loss"] - evs[1]["loss"])}
        if evs[0]["accuracy"] != evs[1]["accuracy"] or roundtrip["loss_diff"] > 1e-4:
            sys.exit(f"round trip check failed: {roundtrip}")
        print(f"tp round trip ok: {roundtrip}", file=sys.stderr)
    base_fig, _, _ = analyze(args.mcufit, args.base, [])
    base_val = accuracy(base, data["val_x"], data["val_y"])

    # Prune each variant to the budget; keep the best on validation (before fine-tuning).
    t_prune = time.time()
    tried = []
    failed = []
    for v in args.variants.split(","):
        net = load_base()
        try:
            rec = prune_to_budget(net, base_model, v, args, work)
        except RuntimeError as e:  # e.g. global ranking that never reaches the peak bound
            failed.append({"variant": v, "error": str(e)})
            print(f"tp {v}: {e}", file=sys.stderr)
            continue
        rec["val_accuracy_pruned"] = accuracy(net, data["val_x"], data["val_y"])
        tried.append((rec, net))
        print(f"tp {v}: fits after {rec['steps']} steps (ratio {rec['ratio']:.3f}; "
              f"{rec['peak_extra_steps']} more for the peak): {rec['resources']}, "
              f"val right after pruning {100 * rec['val_accuracy_pruned']:.2f}%", file=sys.stderr)
    if not tried:
        sys.exit(f"no Torch-Pruning variant reached the budget: {failed}")
    chosen, net = max(tried, key=lambda t: t[0]["val_accuracy_pruned"])
    prune_s = time.time() - t_prune

    t_ft = time.time()
    best, best_val, best_epoch, hist = finetune(net, data, args)
    ft_s = time.time() - t_ft

    # The delivered model: an mcufit model directory and ONNX, both measured by mcufit.
    mdir = os.path.join(args.out, "model")
    write_dir(best, base_model, data_record, mdir)
    fig_dir, fits_dir, over_dir = analyze(args.mcufit, mdir, budget_args(args))
    onnx_path = os.path.join(args.out, "model.onnx")
    best.eval()
    h, w, c = best.input_shape()
    torch.onnx.export(best, (torch.zeros(1, c, h, w),), onnx_path, input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    onnx_folded = fold_constants(onnx_path)
    try:
        fig_onnx, fits_onnx, _ = analyze(args.mcufit, onnx_path, budget_args(args))
        onnx_error = None
    except RuntimeError as e:
        fig_onnx, fits_onnx, onnx_error = None, None, str(e)
    # Test split: read once, here, by mcufit.
    p = subprocess.run([args.mcufit, "eval", mdir, "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"mcufit eval failed: {p.stderr.strip()}")
    ev = json.loads(p.stdout)
    report = {
        "method": "torch-pruning",
        "torch_pruning": tp.__version__ if hasattr(tp, "__version__") else None,
        "torch": torch.__version__,
        "variant": chosen["variant"],
        "variants": [r for r, _ in tried] + failed,
        "budget": {"peak": args.peak, "size": args.size, "macs": args.macs},
        "base": {"dir": args.base, "val_accuracy": base_val, **base_fig},
        "epochs": args.epochs, "lr": args.lr, "batch": args.batch, "weight_decay": args.weight_decay,
        "schedule": "cosine per step to 0", "seed": args.seed,
        "best_epoch": best_epoch, "val_accuracy": best_val,
        "test_accuracy": ev.get("accuracy"), "test_examples": ev.get("examples"),
        "eval": ev,
        "resources": fig_dir, "fits": fits_dir, "over": over_dir,
        "onnx": {"path": onnx_path, "resources": fig_onnx, "fits": fits_onnx, "error": onnx_error, "constant_nodes_folded": onnx_folded,
                 "same_as_dir": fig_onnx is not None and all(
                     fig_onnx[k] == fig_dir[k] for k in ("params", "model_bytes", "macs", "peak_memory"))},
        "peak_extra_steps": chosen["peak_extra_steps"],
        "roundtrip_check": roundtrip,
        "history": hist,
        "seconds": {"prune": prune_s, "finetune": ft_s, "total": time.time() - t_all},
    }
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
