#!/usr/bin/env bash
# GPU check of the LibTorch engine, run from the repository root on a machine with an
# NVIDIA GPU whose python3 has PyTorch 2.11 with CUDA 13 (the lent GPU machines; no
# network there). bench/gpu-prepare.sh makes what it carries: gpu-carry/perun.xz, perun
# built with `--features libtorch-cuda` against the torch==2.11.0 wheel, and gpu-carry/lib
# (Debian's tpm2-tss). libtorch and CUDA's libraries are that machine's own.
#
# It checks first that the machine's PyTorch is the build the binary was linked against and
# that every library the binary needs resolves (libtorch through that PyTorch's torch/lib),
# then measures, each next to its baseline:
#   - perun bench train --device gpu against PyTorch on CUDA, batch 64 and 256;
#   - perun bench overhead --device gpu --samples 50000: all protection against a
#     CIFAR-sized GPU epoch with none;
#   - perun bench tee-train --device gpu: GPU attested training against the same job on
#     the host's CPU cores (the fastest a TEE-only run could be).
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
failed=()
run() { "$@" || failed+=("$* (exit $?)"); }
torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null) || fail "python3 has no torch"
version=$(python3 -c 'import torch; print(torch.__version__)')
echo "PyTorch $version at $torch_dir"
[ "$version" = "2.11.0+cu130" ] || fail "perun was linked against PyTorch 2.11.0+cu130's libtorch, this machine has $version"
python3 -c 'import torch; assert torch.cuda.is_available(); print(torch.cuda.get_device_name(0))' 2>/dev/null ||
  fail "PyTorch sees no CUDA device"

P=/tmp/perun-gpu
if [ -f gpu-carry/perun.xz ]; then
  xz -dc gpu-carry/perun.xz >"$P" 2>/dev/null ||
    python3 -c 'import lzma, shutil; shutil.copyfileobj(lzma.open("gpu-carry/perun.xz"), open("/tmp/perun-gpu", "wb"))'
  chmod +x "$P"
else
  P=${PERUN:?no gpu-carry/perun.xz and no PERUN}
fi
export LD_LIBRARY_PATH="$torch_dir/lib:$PWD/gpu-carry/lib:${LD_LIBRARY_PATH:-}"
echo "== libraries (ldd)"
ldd "$P" | tee /tmp/perun-ldd.txt
grep -q "not found" /tmp/perun-ldd.txt && fail "a library is missing (above)"
for lib in libtorch_cpu.so libtorch_cuda.so libc10.so libc10_cuda.so; do
  where=$(awk -v l="$lib" '$1 == l {print $3}' /tmp/perun-ldd.txt)
  [ "$(dirname "$(readlink -f "$where")")" = "$(readlink -f "$torch_dir/lib")" ] ||
    fail "$lib resolves to '$where', not through $torch_dir/lib"
done
"$P" --version
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "== training throughput: LibTorch CUDA against PyTorch CUDA, same CNN"
run timeout 150 "$P" bench train --device gpu --batch 64 --steps 200 --python python3
run timeout 150 "$P" bench train --device gpu --batch 256 --steps 100 --python python3
echo "== all protection against a CIFAR-sized GPU epoch"
run timeout 240 "$P" bench overhead --device gpu --samples 50000
echo "== attested on the GPU against the same job on the host's CPU cores"
run timeout 150 "$P" bench tee-train --device gpu
if ((${#failed[@]})); then
  printf 'FAIL: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "gpu check: every step ran"
