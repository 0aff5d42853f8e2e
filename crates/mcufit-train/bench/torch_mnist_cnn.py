"""PyTorch CPU reference for examples/bench.rs: the zoo's mnist-cnn, batch 64, SGD momentum.

    python torch_mnist_cnn.py [threads] [steps]
"""
import sys, time
import torch
import torch.nn as nn

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 30
torch.set_num_threads(threads)
torch.manual_seed(0)

net = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
)
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
loss_fn = nn.CrossEntropyLoss()
bs = 64
x = torch.rand(bs * 8, 1, 28, 28)
y = torch.arange(bs * 8) % 10


def step(i):
    xb = x[(i % 8) * bs:(i % 8 + 1) * bs]
    yb = y[(i % 8) * bs:(i % 8 + 1) * bs]
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(net(xb), yb)
    loss.backward()
    opt.step()
    return loss.item()


net.train()
for i in range(3):
    step(i)
best = []
for rep in range(3):
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    best.append(steps * bs / (time.perf_counter() - t))
print(f"torch {torch.__version__}: train {max(best):.0f} images/s (best of 3 x {steps} steps, {threads} threads, batch {bs})")

net.eval()
with torch.no_grad():
    for i in range(3):
        net(x[:bs])
    t = time.perf_counter()
    for i in range(steps):
        net(x[(i % 8) * bs:(i % 8 + 1) * bs])
    print(f"torch eval: {steps * bs / (time.perf_counter() - t):.0f} images/s")
