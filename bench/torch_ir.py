"""Builds a PyTorch nn.Module from an mcufit model file (the IR JSON, docs/model-format.md).

A generic interpreter over the node list, with mcufit's math:
- activations are NCHW inside PyTorch; flat tensors (after flatten / global_avg_pool / dense) are [N, n];
- TF "same" padding (the odd extra pixel bottom/right): F.pad before conv / pool where asymmetric,
  the layer's own symmetric padding otherwise; avg-pool averages over valid (unpadded) pixels only;
- flatten (and a dense reading a non-flat tensor) uses NHWC order, so dense kernels match mcufit's;
- batch norm with the IR's eps, PyTorch momentum 0.1 (mcufit's default), biased batch variance,
  unbiased running variance (as mcufit);
- a final softmax is left out: forward() returns the logits, as mcufit trains on them.

    net = IRModule(json.load(open("model.json")))
    load_weights(net, "run/final/weights.safetensors")   # mcufit's trained weights, optional

`python bench/torch_ir.py MODEL.json [WEIGHTS.safetensors]` prints the layer list and parameter count.
`python bench/torch_ir.py --check DATA` compares against the reference that
`throughput --write-data DATA` leaves next to the data file (weights + mcufit eval logits).
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def same_pads(size, kernel, stride):
    """TF 'same' padding along one axis: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def out_len(padding, size, kernel, stride):
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


def nhwc_flat(a):
    """[N, C, H, W] -> [N, H*W*C] in NHWC order (mcufit's); a plain flatten when H = W = 1, so that
    ONNX export writes Flatten, not a Transpose (which mcufit does not import)."""
    if a.shape[2] == 1 and a.shape[3] == 1:
        return a.flatten(1)
    return a.permute(0, 2, 3, 1).reshape(a.shape[0], -1)


class BatchNorm(nn.Module):
    """BN over dim 1 of an NCHW or [N, C] tensor."""

    def __init__(self, c, eps):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, 0.1, self.eps)


class IRModule(nn.Module):
    def __init__(self, model):
        super().__init__()
        nodes = model["nodes"]
        if not nodes or nodes[0]["op"] != "input":
            raise ValueError("the first node must be the input")
        self.name = model.get("name", "model")
        self.index = {n["name"]: i for i, n in enumerate(nodes)}
        self.nodes = nodes
        self.inputs = [[self.index[s] for s in n.get("inputs", [])] for n in nodes]
        self.layers = nn.ModuleDict()
        self.pads = {}  # node index -> (F.pad tuple or None, padding kwarg for the layer)
        self.pool_args = {}  # pool node index -> (kernel, stride)
        shapes = []  # NHWC, batch excluded; flat = (1, 1, n)
        last = len(nodes) - 1
        # The logits: the output node, or the input of a final softmax (as mcufit).
        self.logits = self.inputs[last][0] if nodes[last]["op"] == "softmax" else last
        for i, n in enumerate(nodes):
            op = n["op"]
            ins = [shapes[j] for j in self.inputs[i]]
            key = self.key(i)
            if op == "input":
                shapes.append(tuple(n["shape"]))
            elif op in ("conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d"):
                h, w, c = ins[0]
                if op.endswith("pool2d"):
                    k = n["pool"]
                    s = n.get("stride") or k
                else:
                    k = n["kernel"]
                    s = n.get("stride", [1, 1])
                padding = n.get("padding", "valid")
                if padding == "same":
                    (t, b), (l, r) = same_pads(h, k[0], s[0]), same_pads(w, k[1], s[1])
                else:
                    t = b = l = r = 0
                sym = t == b and l == r
                self.pads[i] = (None if sym else (l, r, t, b), (t, l) if sym else (0, 0))
                oh, ow = out_len(padding, h, k[0], s[0]), out_len(padding, w, k[1], s[1])
                if op == "conv2d":
                    g = n.get("groups", 1)
                    self.layers[key] = nn.Conv2d(c, n["filters"], tuple(k), tuple(s), padding=self.pads[i][1],
                                                 groups=g, bias=n.get("bias", True))
                    shapes.append((oh, ow, n["filters"]))
                elif op == "depthwise_conv2d":
                    self.layers[key] = nn.Conv2d(c, c, tuple(k), tuple(s), padding=self.pads[i][1], groups=c,
                                                 bias=n.get("bias", True))
                    shapes.append((oh, ow, c))
                else:
                    self.pool_args[i] = (tuple(k), tuple(s))
                    shapes.append((oh, ow, c))
            elif op == "dense":
                n_in = int(np.prod(ins[0]))
                self.layers[key] = nn.Linear(n_in, n["units"], bias=n.get("bias", True))
                shapes.append((1, 1, n["units"]))
            elif op == "batch_norm":
                self.layers[key] = BatchNorm(ins[0][2], n.get("eps", 1e-3))
                shapes.append(ins[0])
            elif op in ("relu", "relu6", "softmax", "add"):
                shapes.append(ins[0])
            elif op == "concat":
                shapes.append((ins[0][0], ins[0][1], sum(s[2] for s in ins)))
            elif op == "global_avg_pool":
                shapes.append((1, 1, ins[0][2]))
            elif op == "flatten":
                shapes.append((1, 1, int(np.prod(ins[0]))))
            elif op == "reshape":
                shapes.append(tuple(n["shape"]))
            else:
                raise ValueError(f"node '{n['name']}': op '{op}' is not supported")
        self.shapes = shapes
        # Free each activation after its last reader (as mcufit does).
        self.last_use = list(range(len(nodes)))
        for i, ins in enumerate(self.inputs):
            for j in ins:
                self.last_use[j] = max(self.last_use[j], i)

    def key(self, i):
        return self.nodes[i]["name"].replace(".", "_")

    def input_shape(self):
        return self.shapes[0]

    def forward(self, x):
        """x: NCHW float tensor. Returns the logits [N, classes]."""
        vals = {0: x}
        for i in range(1, self.logits + 1):
            n = self.nodes[i]
            op = n["op"]
            xs = [vals[j] for j in self.inputs[i]]
            a = xs[0]
            if op in ("conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d") and a.dim() == 2:
                a = a[:, :, None, None]
            if op in ("conv2d", "depthwise_conv2d"):
                pad = self.pads[i][0]
                y = self.layers[self.key(i)](F.pad(a, pad) if pad else a)
            elif op == "max_pool2d":
                (k, s), (pad, sym) = self.pool_args[i], self.pads[i]
                y = F.max_pool2d(F.pad(a, pad, value=float("-inf")) if pad else a, k, s, padding=sym)
            elif op == "avg_pool2d":
                (k, s), (pad, sym) = self.pool_args[i], self.pads[i]
                if pad is None:
                    y = F.avg_pool2d(a, k, s, padding=sym, count_include_pad=False)
                else:  # mean over the valid pixels of each window
                    ones = torch.ones(1, 1, a.shape[2], a.shape[3], dtype=a.dtype, device=a.device)
                    y = F.avg_pool2d(F.pad(a, pad), k, s) / F.avg_pool2d(F.pad(ones, pad), k, s)
            elif op == "dense":
                if a.dim() == 4:
                    a = nhwc_flat(a)
                y = self.layers[self.key(i)](a)
            elif op == "batch_norm":
                y = self.layers[self.key(i)](a)
            elif op == "relu":
                y = F.relu(a)
            elif op == "relu6":
                y = F.relu6(a)
            elif op == "softmax":
                y = F.softmax(a, dim=1)
            elif op == "add":
                y = xs[0]
                for t in xs[1:]:
                    y = y + t
            elif op == "concat":
                y = torch.cat(xs, dim=1)
            elif op == "global_avg_pool":
                # adaptive_avg_pool2d, not mean(): it exports to ONNX GlobalAveragePool (mcufit imports it)
                y = F.adaptive_avg_pool2d(a, 1).flatten(1) if a.dim() == 4 else a
            elif op == "flatten":
                y = nhwc_flat(a) if a.dim() == 4 else a
            elif op == "reshape":
                h, w, c = n["shape"]
                nhwc = a.permute(0, 2, 3, 1) if a.dim() == 4 else a
                nhwc = nhwc.reshape(a.shape[0], h, w, c)
                y = nhwc.reshape(a.shape[0], c) if h == w == 1 else nhwc.permute(0, 3, 1, 2)
            else:
                raise ValueError(f"op '{op}'")
            vals[i] = y
            for j in self.inputs[i]:
                if self.last_use[j] <= i and j != self.logits:
                    vals.pop(j, None)
        return vals[self.logits]

    def kernels(self):
        """Conv / dense kernels: the parameters mcufit applies weight decay to."""
        return [m.weight for m in self.layers.values() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def others(self):
        ids = {id(p) for p in self.kernels()}
        return [p for p in self.parameters() if id(p) not in ids]


def param_count(module):
    return sum(p.numel() for p in module.parameters())


def read_safetensors(path):
    """{name: np.ndarray} of an F32 safetensors file (no dependency on the safetensors package)."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise ValueError(f"{path}: tensor '{name}' is {meta['dtype']}, expected F32")
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(raw[base + a:base + b], dtype="<f4").reshape(meta["shape"]).copy()
    return out


def load_weights(module, path):
    """Loads mcufit's weights.safetensors (TFLite layouts, see mcufit-ir weights.rs) into `module`."""
    tensors = read_safetensors(path)
    masks = [k for k in tensors if k.startswith("mask.")]
    if masks:
        raise ValueError(f"{path} has channel-group masks ({', '.join(masks)}); export deployable weights")
    used = set()

    def take(name):
        used.add(name)
        return torch.from_numpy(tensors[name])

    with torch.no_grad():
        for i, n in enumerate(module.nodes):
            name, op, key = n["name"], n["op"], module.key(i)
            if op in ("conv2d", "depthwise_conv2d", "dense"):
                layer = module.layers[key]
                k = take(f"{name}.kernel")
                if op == "conv2d":
                    k = k.permute(0, 3, 1, 2)  # OHWI -> OIHW
                elif op == "depthwise_conv2d":
                    k = k.permute(3, 0, 1, 2)  # [1, kh, kw, c] -> [c, 1, kh, kw]
                # dense: [units, in] with `in` in NHWC order, as nn.Linear after our NHWC flatten
                if tuple(k.shape) != tuple(layer.weight.shape):
                    raise ValueError(f"{name}.kernel: {tuple(k.shape)} vs {tuple(layer.weight.shape)}")
                layer.weight.copy_(k)
                if layer.bias is not None:
                    layer.bias.copy_(take(f"{name}.bias"))
            elif op == "batch_norm":
                bn = module.layers[key]
                bn.weight.copy_(take(f"{name}.bn.gamma"))
                bn.bias.copy_(take(f"{name}.bn.beta"))
                bn.running_mean.copy_(take(f"{name}.bn.mean"))
                bn.running_var.copy_(take(f"{name}.bn.var"))
    extra = sorted(set(tensors) - used)
    if extra:
        raise ValueError(f"{path}: tensors not in the model: {', '.join(extra)}")
    return module


def read_data(path):
    """The data file of `throughput --write-data`: (NHWC float32 images, int64 labels, classes)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != b"MCUFITD1":
        raise ValueError(f"{path}: not a data file written by `throughput --write-data`")
    n, h, w, c, k = struct.unpack("<5I", raw[8:28])
    floats = n * h * w * c
    if len(raw) != 28 + 4 * (floats + n):
        raise ValueError(f"{path}: size does not match its header")
    x = np.frombuffer(raw, dtype="<f4", count=floats, offset=28).reshape(n, h, w, c)
    y = np.frombuffer(raw, dtype="<u4", count=n, offset=28 + 4 * floats).astype(np.int64)
    return x, y, k


def check(data):
    """Loads the reference left by `throughput --write-data DATA` (DATA.model.json, DATA.net/,
    DATA.logits) and compares PyTorch's eval logits with mcufit's. Exits 1 on a mismatch."""
    model = json.load(open(f"{data}.model.json"))
    net = IRModule(model)
    load_weights(net, f"{data}.net/weights.safetensors")
    net.eval()
    ref = np.fromfile(f"{data}.logits", dtype="<f4")
    x, _, k = read_data(data)
    m = ref.size // k
    with torch.no_grad():
        out = net(torch.from_numpy(x[:m].copy()).permute(0, 3, 1, 2).contiguous()).numpy().reshape(-1)
    diff = float(np.abs(out - ref).max())
    scale = float(np.abs(ref).max())
    ok = diff <= 1e-3 * max(scale, 1.0)
    print(json.dumps({"model": model.get("name"), "examples": m, "max_abs_diff": diff, "max_abs_logit": scale,
                      "params": param_count(net), "ok": ok}))
    return ok


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(0 if check(sys.argv[2]) else 1)
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    net = IRModule(json.load(open(sys.argv[1])))
    if len(sys.argv) == 3:
        load_weights(net, sys.argv[2])
    print(net)
    print(f"params: {param_count(net)}")


if __name__ == "__main__":
    main()
