//! Perun's patch to burn-tch 0.22.1: the gradients of a 2-D convolution from ATen's own
//! `convolution_backward` (`src/conv_backward.cpp`), the kernel PyTorch's autograd calls,
//! instead of Burn's generic rewrite as a transposed convolution (input gradient) and a
//! convolution with an HxW kernel (weight gradient), which ran the CIFAR-shaped CNN's
//! training step 2.2x slower than PyTorch (tracel-ai/burn#4875).

use std::ffi::{CStr, c_char, c_int, c_void};

use burn_backend::ops::ConvOptions;

use crate::TchTensor;

unsafe extern "C" {
    fn perun_conv2d_backward(
        grad_input: *mut *mut c_void,
        grad_weight: *mut *mut c_void,
        grad_output: *const c_void,
        input: *const c_void,
        weight: *const c_void,
        stride: *const i64,
        padding: *const i64,
        dilation: *const i64,
        groups: i64,
        want_input: c_int,
        want_weight: c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// Which gradient to compute.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grad {
    /// With respect to the input, `[batch, channels_in, height, width]`.
    Input,
    /// With respect to the weight, `[channels_out, channels_in / groups, k1, k2]`.
    Weight,
}

/// The gradient `grad` of `conv2d(x, weight, options)` for `output_grad`. Asymmetric
/// padding is applied to `x` first, as the forward pass does, and the input gradient
/// cropped back to `x`'s shape.
///
/// # Panics
/// Where ATen refuses the shapes, as every other op of this backend does (the forward
/// pass with the same shapes would have been refused first).
pub(crate) fn conv2d_backward(
    x: TchTensor,
    weight: TchTensor,
    output_grad: TchTensor,
    options: ConvOptions<2>,
    grad: Grad,
) -> TchTensor {
    let asymmetric = options.is_asymmetric().then_some(options.padding);
    let (x, options) =
        burn_backend::ops::conv::pad_asymmetric_conv_input::<crate::LibTorch, 2>(x, options);
    let stride = options.stride.map(|v| v as i64);
    let padding = options.padding_begin().map(|v| v as i64);
    let dilation = options.dilation.map(|v| v as i64);
    let mut out: *mut c_void = std::ptr::null_mut();
    let mut error = [0 as c_char; 512];
    let slot = &mut out as *mut *mut c_void;
    let (grad_input, grad_weight) = match grad {
        Grad::Input => (slot, std::ptr::null_mut()),
        Grad::Weight => (std::ptr::null_mut(), slot),
    };
    // SAFETY: the three tensors are live tch handles for the duration of the call; the
    // shim writes a tensor it allocated into `out` (taken over by `from_ptr` below, freed
    // by tch's `at_free` on drop) only when it returns 0, and at most `error.len()` bytes
    // into `error`.
    let rc = unsafe {
        perun_conv2d_backward(
            grad_input,
            grad_weight,
            output_grad.tensor.as_ptr().cast(),
            x.tensor.as_ptr().cast(),
            weight.tensor.as_ptr().cast(),
            stride.as_ptr(),
            padding.as_ptr(),
            dilation.as_ptr(),
            options.groups as i64,
            c_int::from(grad == Grad::Input),
            c_int::from(grad == Grad::Weight),
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if rc != 0 || out.is_null() {
        // SAFETY: the shim NUL-terminates what it writes; the buffer starts zeroed.
        let why = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy();
        // allow-panic: every op of this backend panics on an ATen error (tch's own
        // wrappers unwrap); the shapes are the forward pass's, which ATen accepted, and
        // Perun validates a model spec's shapes before any tensor is made.
        panic!("convolution_backward: {why}");
    }
    // SAFETY: `out` is a tensor the shim allocated with `new` for this call alone.
    let tensor = unsafe { tch::Tensor::from_ptr(out.cast()) };
    match (grad, asymmetric) {
        (Grad::Input, Some(pads)) => {
            let [_, _, h, w] = tensor.size4().map_or([0; 4], |s| [s.0, s.1, s.2, s.3]);
            let (top, bottom) = (pads[0].0 as i64, pads[0].1 as i64);
            let (left, right) = (pads[1].0 as i64, pads[1].1 as i64);
            TchTensor::new(tensor.narrow(2, top, h - top - bottom).narrow(3, left, w - left - right))
        }
        _ => TchTensor::new(tensor),
    }
}
