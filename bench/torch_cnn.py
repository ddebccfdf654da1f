# Copied from ../shared/gpu/torch_cnn.py (Perun GPU check material, 2026), unchanged below this line.
"""Same CIFAR-10-shaped CNN as Perun's bench train (Adam, batch B), on a chosen device.
Usage: torch_cnn.py DEVICE STEPS BATCH [THREADS]. Prints one JSON line."""
import json, sys, time, torch
from torch import nn
dev, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if len(sys.argv) > 4: torch.set_num_threads(int(sys.argv[4]))
torch.manual_seed(7)
m = nn.Sequential(nn.Conv2d(3,32,3,padding=1), nn.ReLU(), nn.Conv2d(32,32,3,padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32,64,3,padding=1), nn.ReLU(), nn.Conv2d(64,64,3,padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(4096,256), nn.ReLU(), nn.Linear(256,10)).to(dev)
opt = torch.optim.Adam(m.parameters(), lr=1e-3); lf = nn.CrossEntropyLoss()
x = torch.rand(steps*batch,3,32,32, device=dev); y = torch.randint(0,10,(steps*batch,), device=dev)
def step(i):
    xb, yb = x[i*batch:(i+1)*batch], y[i*batch:(i+1)*batch]
    opt.zero_grad(); l = lf(m(xb), yb); l.backward(); opt.step()
for i in range(3): step(i)
if dev == "cuda": torch.cuda.synchronize()
t = time.perf_counter()
for i in range(steps): step(i)
if dev == "cuda": torch.cuda.synchronize()
dt = time.perf_counter() - t
print(json.dumps({"torch": torch.__version__, "device": dev, "batch": batch, "threads": torch.get_num_threads(), "images_per_second": steps*batch/dt}))
