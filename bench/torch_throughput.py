"""PyTorch CPU side of bench/train_vs_pytorch.sh: the same protocol as mcufit's
`crates/mcufit-train/examples/throughput.rs`, on the same data file and the same layers
(bench/torch_ir.py builds them from the model's IR JSON).

    python bench/torch_throughput.py --model-json DATA.model.json --data DATA \
        [--name NAME] [--threads 2] [--steps 40] [--warmup 5] [--repeats 3]

Batch 64, SGD momentum 0.9 (no dampening), weight decay 5e-4 on conv / dense kernels only (as
mcufit), constant LR 0.05, cross-entropy on the logits. The data are one preloaded NCHW tensor;
batches are taken in order (views, no copy). W untimed warm-up steps, then R timed blocks of S
steps; evaluation (eval mode, no_grad, batch 256 over all examples) once untimed, then R timed.
Prints one JSON line like the mcufit side.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ir import IRModule, param_count, read_data  # noqa: E402

BATCH, EVAL_BATCH = 64, 256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-json", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--name")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = IRModule(json.load(open(a.model_json)))
    x, y, k = read_data(a.data)
    if tuple(x.shape[1:]) != tuple(net.input_shape()):
        sys.exit(f"{a.data}: inputs {x.shape[1:]}, the model wants {net.input_shape()}")
    x = torch.from_numpy(x.copy()).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(y)
    nb = x.shape[0] // BATCH

    opt = torch.optim.SGD([{"params": net.kernels(), "weight_decay": 5e-4},
                           {"params": net.others(), "weight_decay": 0.0}], lr=0.05, momentum=0.9)
    net.train()
    i = 0

    def step():
        nonlocal i
        b = i % nb
        i += 1
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x[b * BATCH:(b + 1) * BATCH]), y[b * BATCH:(b + 1) * BATCH])
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    train = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        for _ in range(a.steps):
            step()
        train.append(a.steps * BATCH / (time.perf_counter() - t))

    def evaluate():
        net.eval()
        with torch.no_grad():
            for s in range(0, x.shape[0], EVAL_BATCH):
                net(x[s:s + EVAL_BATCH]).argmax(1)
        net.train()

    evaluate()  # warm-up
    ev = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        evaluate()
        ev.append(x.shape[0] / (time.perf_counter() - t))
    print(json.dumps({
        "model": a.name or net.name, "threads": a.threads, "steps": a.steps, "warmup": a.warmup,
        "repeats": a.repeats, "batch": BATCH,
        "train_images_per_sec": statistics.median(train), "train_spread": [min(train), max(train)],
        "eval_images_per_sec": statistics.median(ev), "eval_spread": [min(ev), max(ev)],
        "params": param_count(net), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
