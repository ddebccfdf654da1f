#!/usr/bin/env bash
# GPU check for the training engine, run from the repository root on a machine with an
# NVIDIA GPU and its Vulkan ICD. Expects a `perun` built with `--features gpu` at
# $PERUN (default gpu-carry/perun) and, where the machine lacks the Vulkan loader,
# libvulkan.so.1 in gpu-carry/lib (from Debian's libvulkan1).
# Debian's Vulkan loader and GL packages (apt-get download libvulkan1 libegl1 libglvnd0
# libopengl0 libgl1 libglx0 libgles2, into gpu-carry/debs) are unpacked there with
# dpkg -x; the NVIDIA ICD is named explicitly (../shared/gpu/README.md).
set -u
if ls gpu-carry/debs/*.deb >/dev/null 2>&1; then
  for d in gpu-carry/debs/*.deb; do dpkg -x "$d" gpu-carry/root; done
  export LD_LIBRARY_PATH="$PWD/gpu-carry/root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
export LD_LIBRARY_PATH="$PWD/gpu-carry/lib:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
# The binary travels compressed (xz); unpack it with xz or, failing that, Python.
if [ -f gpu-carry/perun.xz ] && [ ! -x "${PERUN:-gpu-carry/perun}" ]; then
  xz -dc gpu-carry/perun.xz > /tmp/perun-gpu 2>/dev/null ||
    python3 -c 'import lzma, shutil; shutil.copyfileobj(lzma.open("gpu-carry/perun.xz"), open("/tmp/perun-gpu", "wb"))'
  chmod +x /tmp/perun-gpu && PERUN=/tmp/perun-gpu
fi
P=${PERUN:-gpu-carry/perun}
t=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
cat "$VK_DRIVER_FILES" 2>/dev/null | tr -d '\n' | head -c 300; echo
echo "== training throughput, GPU then CPU ($(nproc) cores), same binary"
timeout 200 $P bench train --device gpu --steps 100
timeout 100 $P bench train --device cpu --steps 20
echo "== PyTorch CUDA, same CNN, batch 64 and 256 (the figure to reach)"
for b in 64 256; do timeout 120 python3 bench/torch_cnn.py cuda 200 "$b" 2>&1 | tail -1; done
echo "== opening sealed assets on all cores (the job runner's path) against one thread and age"
timeout 120 $P bench seal --size-mib 512 --runs 2
echo "== digits CNN trained on the GPU, evaluated on GPU and CPU"
$P dataset import examples/datasets/digits_8x8.csv --label digit --out "$t/d.st"
$P dataset split "$t/d.st" --ratios 80,20 --out "$t/train.st" --out "$t/test.st"
timeout 150 $P train --device gpu --spec examples/models/digits-cnn.json --data "$t/train.st" --out "$t/w.st" | tail -3
$P eval --device gpu --spec examples/models/digits-cnn.json --weights "$t/w.st" --data "$t/test.st" | head -1
$P eval --device cpu --spec examples/models/digits-cnn.json --weights "$t/w.st" --data "$t/test.st" | head -1
