// Perun's patch to burn-tch 0.22.1: the gradients of a 2-D convolution from ATen's own
// `convolution_backward` (the kernel PyTorch's autograd calls), instead of Burn's generic
// rewrite as a transposed convolution (input gradient) and a convolution with an HxW kernel
// (weight gradient), which ran the CIFAR-shaped CNN's training step 2.2x slower than
// PyTorch (tracel-ai/burn#4875). Tensors cross as tch's handles (`torch::Tensor *`, that is
// `at::Tensor *`, allocated with new and freed by tch's at_free).
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <exception>

extern "C" {

// Writes the gradient wrt the input (`want_input`) or the weight (`want_weight`) of
// conv2d(input, weight, stride, padding, dilation, groups) for `grad_output` into
// `*grad_input` / `*grad_weight`. Returns 0, or 1 with ATen's message in `error`
// (truncated to `error_len` bytes, NUL-terminated).
int perun_conv2d_backward(at::Tensor **grad_input, at::Tensor **grad_weight,
                          const at::Tensor *grad_output, const at::Tensor *input,
                          const at::Tensor *weight, const int64_t *stride,
                          const int64_t *padding, const int64_t *dilation, int64_t groups,
                          int want_input, int want_weight, char *error, size_t error_len) {
  try {
    std::array<bool, 3> mask = {want_input != 0, want_weight != 0, false};
    auto grads = at::convolution_backward(
        *grad_output, *input, *weight, c10::nullopt, at::IntArrayRef(stride, 2),
        at::IntArrayRef(padding, 2), at::IntArrayRef(dilation, 2), false,
        at::IntArrayRef({0, 0}), groups, mask);
    if (want_input) *grad_input = new at::Tensor(std::get<0>(grads));
    if (want_weight) *grad_weight = new at::Tensor(std::get<1>(grads));
    return 0;
  } catch (const std::exception &e) {
    if (error_len > 0) {
      std::strncpy(error, e.what(), error_len - 1);
      error[error_len - 1] = '\0';
    }
    return 1;
  }
}
}
