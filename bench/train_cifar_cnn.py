"""PyTorch peer of `perun bench train`: the same CIFAR-10-shaped CNN, Adam, batch 64,
random data, on the CPU with as many threads as Perun uses (BENCH_THREADS), or on the
first CUDA GPU (BENCH_DEVICE=cuda). Prints one JSON line."""
import json
import os
import sys
import time

import torch
from torch import nn

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
torch.set_num_threads(threads)
torch.manual_seed(7)

model = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
    nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
    nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(4096, 256), nn.ReLU(),
    nn.Linear(256, 10),
).to(device)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
# The data sits in host memory and each batch is copied to the device, as Perun's does.
x = torch.rand(steps * batch, 3, 32, 32)
y = torch.randint(0, 10, (steps * batch,))


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def step(i):
    xb, yb = x[i * batch:(i + 1) * batch].to(device), y[i * batch:(i + 1) * batch].to(device)
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()


for i in range(2):
    step(i)
sync()
t = time.perf_counter()
for i in range(steps):
    step(i)
sync()
dt = time.perf_counter() - t
print(json.dumps({"framework": f"pytorch {torch.__version__} ({device.type})", "threads": threads,
                  "images_per_second": steps * batch / dt, "seconds": dt, "steps": steps}))
