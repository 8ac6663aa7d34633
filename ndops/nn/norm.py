"""``BatchNormNd``: ``nn.BatchNorm{1,2,3}d`` for inputs with any number of spatial dims.

It subclasses torch's ``_BatchNorm``, which holds the N-independent parts: parameters and
buffers with torch's names (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``), ``reset_running_stats``/``reset_parameters``, ``extra_repr`` and the
loading of old state dicts. ``forward`` follows torch's rules for when batch statistics are used
and the running ones updated, and calls ``ndops.functional.batch_norm_nd``. Being a subclass,
it is also found by code that looks for ``_BatchNorm`` (e.g.
``nn.SyncBatchNorm.convert_sync_batchnorm``, freezing helpers). With ``activation=`` it applies
that activation too, fused (``ndops.functional.batch_norm_act_nd``); the state is unchanged.
"""
from torch.nn.modules.batchnorm import _BatchNorm

from .. import functional
from ..fallback.norm import ACTIVATIONS
from ._spatial import resolve_spatial_dims


class BatchNormNd(_BatchNorm):
    """Batch normalization over (B, C, *spatial) inputs, any number of spatial dims.

    Arguments and defaults are torch's ``nn.BatchNorm2d`` (``momentum=None``: cumulative moving
    average). ``spatial_dims=None`` accepts any input of rank >= 3; ``spatial_dims=N`` requires
    rank N + 2. Like torch's modules, unbatched input is not accepted. ``activation`` ("none",
    "relu", "leaky_relu" with ``negative_slope``, "silu", "gelu", "gelu_tanh") follows the
    normalization, computed in the same kernel; parameters, buffers and state_dict are those of
    torch's BatchNorm whatever the activation.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True,
                 spatial_dims=None, activation="none", negative_slope=0.01):
        n = resolve_spatial_dims("BatchNormNd", spatial_dims, {}, required=False)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"ndops.nn.BatchNormNd: activation must be one of {ACTIVATIONS}, "
                             f"got {activation!r}")
        # torch < 2.13 has no ``bias`` argument: pass it only when it changes something.
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype, **({} if bias else {"bias": False}))
        self.spatial_dims = n
        self.activation = activation
        self.negative_slope = float(negative_slope)

    def _check_input_dim(self, input):
        n = self.spatial_dims
        if (n is None and input.dim() < 3) or (n is not None and input.dim() != n + 2):
            expected = "rank >= 3" if n is None else f"rank {n + 2} (N={n} spatial dims)"
            raise ValueError(f"ndops.nn.BatchNormNd: input must have shape (B, C, *spatial) "
                             f"with {expected}, got shape {tuple(input.shape)}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"ndops.nn.BatchNormNd: input must have num_features="
                             f"{self.num_features} channels (dim 1), got shape "
                             f"{tuple(input.shape)}")

    def forward(self, input):
        self._check_input_dim(input)
        # momentum=None: cumulative moving average, each batch weighted 1/batches-seen-so-far.
        average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                average_factor = 1.0 / float(self.num_batches_tracked)
        # Batch statistics in training, and in eval when no running statistics exist.
        use_batch_stats = self.training or (self.running_mean is None
                                            and self.running_var is None)
        # The buffers are passed only where they are read (eval) or updated (tracked training).
        pass_buffers = not self.training or self.track_running_stats
        args = (input, self.running_mean if pass_buffers else None,
                self.running_var if pass_buffers else None, self.weight, self.bias,
                use_batch_stats, average_factor, self.eps)
        if self.activation == "none":
            return functional.batch_norm_nd(*args, spatial_dims=self.spatial_dims)
        return functional.batch_norm_act_nd(*args, self.activation,
                                            negative_slope=self.negative_slope,
                                            spatial_dims=self.spatial_dims)

    def extra_repr(self):
        text = super().extra_repr()
        if self.spatial_dims is not None:
            text += f", spatial_dims={self.spatial_dims}"
        if self.activation != "none":
            text += f", activation={self.activation!r}"
        if self.activation == "leaky_relu":
            text += f", negative_slope={self.negative_slope}"
        return text
