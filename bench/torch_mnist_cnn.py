"""PyTorch CPU side of bench/train_vs_pytorch.sh: zoo:mnist-cnn, same layers, batch 64, 2 threads.

Prints one JSON line: {"images_per_sec": ..., "steps": ...}. The data are the real MNIST training
images, preloaded as one float tensor (PyTorch's fastest path; mcufit's figure includes its loader).
"""
import gzip, json, sys, time
import numpy as np
import torch
import torch.nn as nn

def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)

def main():
    mnist, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(2)
    torch.manual_seed(42)
    x = torch.from_numpy((idx(f"{mnist}/train-images-idx3-ubyte.gz").astype(np.float32) - 128.0) / 128.0).unsqueeze(1)
    y = torch.from_numpy(idx(f"{mnist}/train-labels-idx1-ubyte.gz").astype(np.int64))
    # zoo:mnist-cnn: conv32-bn-relu-pool-conv64-bn-relu-pool-flatten-dense128-relu-dense10
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(x.shape[0], generator=g)
    def step(i):
        b = perm[(i * 64) % (x.shape[0] - 64):][:64]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x[b]), y[b])
        loss.backward()
        opt.step()
    for i in range(warmup):
        step(i)
    t = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    dt = time.perf_counter() - t
    print(json.dumps({"images_per_sec": steps * 64 / dt, "steps": steps, "torch": torch.__version__}))

main()
