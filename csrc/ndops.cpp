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

  // ---- batch norm + activation (csrc/cpu/batch_norm.cpp) -----------------------------------
}
