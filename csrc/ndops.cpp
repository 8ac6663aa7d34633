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

  // ---- pooling (csrc/cpu/pool.cpp) ---------------------------------------------------------

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
}
