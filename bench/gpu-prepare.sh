#!/usr/bin/env bash
# Prepares the GPU check (bench/gpu-check.sh) here, on a machine without a GPU: a release
# build of perun with the LibTorch CUDA engine, linked against the same torch==2.11.0
# wheel the GPU machine's PyTorch is (scripts/install-deps --libtorch), carried
# xz-compressed as gpu-carry/perun.xz, and Debian's tpm2-tss libraries (which the worker
# role links) in gpu-carry/lib. Nothing else travels: libtorch and CUDA come from that
# machine's own PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps --libtorch --no-python
scripts/with-libtorch --cuda cargo build --release --locked -p perun --features libtorch-cuda
bin="${CARGO_TARGET_DIR:-target/cuda}/release/perun"
mkdir -p gpu-carry/lib
xz -T0 -6 -c "$bin" >gpu-carry/perun.xz
# The libraries the binary needs that are neither libtorch's, CUDA's nor glibc's.
for lib in $(ldd "$bin" | awk '/libtss2|libcrypto/ {print $3}'); do
  cp -L "$lib" gpu-carry/lib/
done
ls -l gpu-carry/perun.xz gpu-carry/lib
echo "carry gpu-carry and run: bench/gpu-check.sh"
