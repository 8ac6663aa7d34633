// ndops: every operator schema, declared once.
//
// Kernels register per backend in csrc/cpu/<family>.cpp (TORCH_LIBRARY_IMPL(ndops, CPU, m))
// and csrc/cuda/<family>.cu. Backward passes are ops of their own (named _<op>_backward);
// autograd and fake (meta) kernels are attached from Python in ndops/_ops/<family>.py.
#include <Python.h>
#include <torch/library.h>

// Importing ndops._C loads this shared library, which runs the registrations below. The
// module itself is empty: the API is torch.ops.ndops.*.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr,
                                          nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(ndops, m) {
  // ---- padding (csrc/cpu/pad.cpp) -------------------------------------------------------
  // pad: torch.nn.functional.pad's layout, (left_last, right_last, left_second_last, ...),
  // applied to the trailing len(pad) / 2 dims of an input of any rank >= len(pad) / 2, in
  // every mode (ndops.functional.pad_nd enforces torch's rank rule for the non-constant ones).
  // mode: "constant" | "reflect" | "replicate" | "circular"; value is used by "constant" only.
  // _pad_nd_backward sums grad_output into the input coordinates each element copied.
  m.def("pad_nd(Tensor input, SymInt[] pad, str mode, float value) -> Tensor");
  m.def("_pad_nd_backward(Tensor grad_output, SymInt[] input_size, SymInt[] pad, str mode) -> Tensor");

  // ---- convolution (csrc/cpu/conv.cpp) ---------------------------------------------------
  // conv_nd: torch's conv{1,2,3}d at any N; input (B, C_in, *spatial), weight (C_out,
  // C_in/groups, *kernel); stride, dilation: one entry per spatial dim; padding: one entry
  // per dim (both sides) or (before, after) pairs dim by dim; padding_mode: nn.Conv's
  // "zeros" | "reflect" | "replicate" | "circular", applied while gathering (no padded copy).
  // _conv_nd_backward returns the gradients of (input, weight, bias) selected by output_mask
  // (undefined where not selected).
  m.def("conv_nd(Tensor input, Tensor weight, Tensor? bias, int[] stride, int[] padding, "
        "int[] dilation, int groups, str padding_mode=\"zeros\") -> Tensor");
  m.def("_conv_nd_backward(Tensor grad_output, Tensor input, Tensor weight, int[] stride, "
        "int[] padding, int[] dilation, int groups, bool[3] output_mask, "
        "str padding_mode=\"zeros\") -> (Tensor, Tensor, Tensor)");
  // conv_bias_act_nd: act(conv_nd(...)) with the activation fused in: "none" | "relu" |
  // "leaky_relu" (negative_slope) | "silu" | "gelu" | "gelu_tanh". Returns (output,
  // pre_activation): the conv output before act where act' needs it (silu, gelu, gelu_tanh,
  // leaky_relu with a negative slope), else an empty tensor; the backward reads it (or the
  // output) back.
  m.def("conv_bias_act_nd(Tensor input, Tensor weight, Tensor? bias, int[] stride, "
        "int[] padding, int[] dilation, int groups, str activation, float negative_slope=0.01, "
        "str padding_mode=\"zeros\") -> (Tensor, Tensor)");
  m.def("_conv_bias_act_nd_backward(Tensor grad_output, Tensor output, Tensor pre_activation, "
        "Tensor input, Tensor weight, int[] stride, int[] padding, int[] dilation, int groups, "
        "str activation, float negative_slope, bool[3] output_mask, "
        "str padding_mode=\"zeros\") -> (Tensor, Tensor, Tensor)");
  // conv_transpose_nd: torch's conv_transpose{1,2,3}d at any N (arguments in torch's order);
  // weight (C_in, C_out/groups, *kernel).
  m.def("conv_transpose_nd(Tensor input, Tensor weight, Tensor? bias, int[] stride, "
        "int[] padding, int[] output_padding, int groups, int[] dilation) -> Tensor");
  m.def("_conv_transpose_nd_backward(Tensor grad_output, Tensor input, Tensor weight, "
        "int[] stride, int[] padding, int[] output_padding, int groups, int[] dilation, "
        "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");

  // ---- pooling (csrc/cpu/pool.cpp) ---------------------------------------------------------
  // Batched (B, C, *spatial) input, N = input.dim() - 2 >= 1, per-dim lists of N ints; torch's
  // output sizes, divisors and max rule (csrc/common/window.h). Indices are flat over each
  // plane's N spatial dims; with return_indices=False the max ops skip them and return an
  // empty indices tensor. _max_pool_nd_backward (for both max ops) scatters-adds grad by
  // index into zeros of input_size; _max_unpool_nd_backward gathers by index (its adjoint).
  // Adaptive windows: csrc/cpu/adaptive_pool.cpp.
  m.def("max_pool_nd(Tensor input, int[] kernel_size, int[] stride, int[] padding, "
        "int[] dilation, bool ceil_mode, bool return_indices=True) -> (Tensor, Tensor)");
  m.def("_max_pool_nd_backward(Tensor grad_output, Tensor indices, SymInt[] input_size) "
        "-> Tensor");
  m.def("avg_pool_nd(Tensor input, int[] kernel_size, int[] stride, int[] padding, "
        "bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");
  m.def("_avg_pool_nd_backward(Tensor grad_output, SymInt[] input_size, int[] kernel_size, "
        "int[] stride, int[] padding, bool ceil_mode, bool count_include_pad, "
        "int? divisor_override) -> Tensor");
  m.def("adaptive_avg_pool_nd(Tensor input, SymInt[] output_size) -> Tensor");
  m.def("_adaptive_avg_pool_nd_backward(Tensor grad_output, SymInt[] input_size) -> Tensor");
  m.def("adaptive_max_pool_nd(Tensor input, SymInt[] output_size, bool return_indices=True) "
        "-> (Tensor, Tensor)");
  m.def("max_unpool_nd(Tensor input, Tensor indices, SymInt[] output_size) -> Tensor");
  m.def("_max_unpool_nd_backward(Tensor grad_output, Tensor indices) -> Tensor");

  // ---- interpolation (csrc/cpu/interpolate.cpp) --------------------------------------------
  // interpolate_nd: resample the trailing len(output_size) dims of an input of any rank (the
  // leading dims are independent planes) to output_size. scales: the user's scale factors (they
  // set the source coordinates, as in torch) or None (ratio in/out). mode: "nearest" |
  // "nearest-exact" | "linear" (multilinear); align_corners is used by "linear" only.
  // antialias=True has no compiled kernel (ndops.interpolate_nd runs its fallback for it).
  // _interpolate_nd_backward: the adjoint, grad_output (shape of the output) -> input_size.
  // A channels-last (B, C, *spatial) input, or grad_output, gives a channels-last result.
  m.def("interpolate_nd(Tensor input, SymInt[] output_size, float[]? scales, str mode, "
        "bool align_corners, bool antialias) -> Tensor");
  m.def("_interpolate_nd_backward(Tensor grad_output, SymInt[] output_size, SymInt[] input_size, "
        "float[]? scales, str mode, bool align_corners) -> Tensor");

  // ---- batch norm + activation (csrc/cpu/batch_norm.cpp) -----------------------------------
  // batch_norm_act_nd: act(F.batch_norm(...)), activation "none" | "relu" | "leaky_relu"
  // (negative_slope) | "silu" | "gelu" | "gelu_tanh". Functional: returns (output, save_mean,
  // save_invstd, new_running_mean, new_running_var); the caller copies the new running stats
  // into its buffers (they equal the given ones in eval mode or for an empty batch; shape (0,)
  // when none are given). save_* are float32 for half/bfloat16 inputs.
  // _batch_norm_act_nd_backward: (grad_input, grad_weight, grad_bias); recomputes the
  // pre-activation from input, save_mean, save_invstd, weight and bias. eps is read by the
  // double backward only (which recomputes the batch statistics in training mode).
  m.def("batch_norm_act_nd(Tensor input, Tensor? running_mean, Tensor? running_var, "
        "Tensor? weight, Tensor? bias, bool training, float momentum, float eps, "
        "str activation, float negative_slope) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("_batch_norm_act_nd_backward(Tensor grad_output, Tensor input, Tensor? weight, "
        "Tensor? bias, Tensor save_mean, Tensor save_invstd, bool training, float eps, "
        "str activation, float negative_slope) -> (Tensor, Tensor, Tensor)");

  // ---- fold / unfold (csrc/cpu/fold.cpp) ----
  // unfold_nd: F.unfold at any N, (B, C, *spatial) -> (B, C * prod(kernel_size), L): the column
  // index ordered (c, k_0, ..., k_{N-1}), L the block positions in row-major order, zero where
  // a tap falls in the padding. fold_nd: F.fold at any N, its adjoint, (B, C * prod(kernel_size),
  // L) -> (B, C, *output_size), overlapping values summed. Each is the other's backward.
  m.def("unfold_nd(Tensor input, int[] kernel_size, int[] dilation, int[] padding, "
        "int[] stride) -> Tensor");
  m.def("fold_nd(Tensor input, SymInt[] output_size, int[] kernel_size, int[] dilation, "
        "int[] padding, int[] stride) -> Tensor");
}
