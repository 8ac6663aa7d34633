"""``ndops.nn`` module mechanics: pickling, deepcopy, repr, how N is resolved, and the errors
raised at construction and forward."""
import copy
import pickle

import pytest
import torch
from torch import nn

from ndops.nn import (AdaptiveAvgPoolNd, AdaptiveMaxPoolNd, AvgPoolNd, BatchNormNd, ConvNd,
                      ConvTransposeNd, FoldNd, MaxPoolNd, MaxUnpoolNd, PadNd, UnfoldNd,
                      UpsampleNd)


def module_and_inputs(name, n):
    """A configured module of kind ``name`` at N = ``n``, with its forward arguments."""
    spatial = (4, 5, 3, 4, 3)[:n]
    x = torch.randn((2, 4) + spatial)

    def unpool_case():
        pooled, indices = MaxPoolNd(2, return_indices=True, spatial_dims=n)(x)
        return MaxUnpoolNd(2, spatial_dims=n), (pooled, indices, spatial)

    def fold_case():
        columns = UnfoldNd(2, spatial_dims=n)(x)
        return FoldNd(spatial, 2, spatial_dims=n), (columns,)

    builders = {
        "conv": lambda: (ConvNd(4, 6, 3, padding="same", padding_mode="reflect", groups=2,
                                spatial_dims=n), (x,)),
        "conv_transpose": lambda: (ConvTransposeNd(4, 2, 2, stride=2, spatial_dims=n), (x,)),
        "max_pool": lambda: (MaxPoolNd(2, return_indices=True, spatial_dims=n), (x,)),
        "avg_pool": lambda: (AvgPoolNd(2, stride=1, padding=1, spatial_dims=n), (x,)),
        "adaptive_avg_pool": lambda: (AdaptiveAvgPoolNd(2, spatial_dims=n), (x,)),
        "adaptive_max_pool": lambda: (AdaptiveMaxPoolNd((2,) * n), (x,)),
        "max_unpool": unpool_case,
        "batch_norm": lambda: (BatchNormNd(4, momentum=None, spatial_dims=n), (x,)),
        "upsample": lambda: (UpsampleNd(scale_factor=2, spatial_dims=n), (x,)),
        "pad": lambda: (PadNd(1, "circular", spatial_dims=n), (x,)),
        "unfold": lambda: (UnfoldNd(2, spatial_dims=n), (x,)),
        "fold": fold_case,
    }
    return builders[name]()


MODULE_NAMES = ["conv", "conv_transpose", "max_pool", "avg_pool", "adaptive_avg_pool",
                "adaptive_max_pool", "max_unpool", "batch_norm", "upsample", "pad", "unfold",
                "fold"]


def _assert_same_output(a, b):
    if isinstance(a, tuple):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    else:
        assert torch.equal(a, b)


@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("name", MODULE_NAMES)
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_copies_give_the_same_output_and_own_their_state(name, n, how):
    module, inputs = module_and_inputs(name, n)
    module.eval()  # so that batch norm's running stats stay put between the calls
    expected = module(*inputs)
    clone = (pickle.loads(pickle.dumps(module)) if how == "pickle" else copy.deepcopy(module))
    assert type(clone) is type(module) and clone.spatial_dims == module.spatial_dims
    _assert_same_output(expected, clone(*inputs))
    assert list(clone.state_dict()) == list(module.state_dict())
    for key, value in module.state_dict().items():
        assert torch.equal(clone.state_dict()[key], value)
        assert clone.state_dict()[key].data_ptr() != value.data_ptr()


def test_repr_equals_torch_where_torch_has_the_module():
    pairs = [
        (ConvNd(3, 8, 3, stride=2, padding=1, groups=1, bias=False, padding_mode="reflect",
                spatial_dims=2),
         nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False, padding_mode="reflect")),
        (ConvTransposeNd(4, 8, (2, 3), stride=2, output_padding=1, groups=2, dilation=2),
         nn.ConvTranspose2d(4, 8, (2, 3), stride=2, output_padding=1, groups=2, dilation=2)),
        (BatchNormNd(5, momentum=None, affine=False), nn.BatchNorm2d(5, momentum=None,
                                                                      affine=False)),
        (MaxPoolNd(2, padding=1), nn.MaxPool2d(2, padding=1)),
        (AvgPoolNd(3, stride=1), nn.AvgPool2d(3, stride=1)),
        (AdaptiveAvgPoolNd(2), nn.AdaptiveAvgPool2d(2)),
        (UpsampleNd(scale_factor=2, mode="nearest"), nn.Upsample(scale_factor=2)),
        (UnfoldNd(3, padding=1), nn.Unfold(3, padding=1)),
    ]
    for ours, theirs in pairs:
        expected = repr(theirs)
        for dims in ("1d", "2d", "3d"):
            expected = expected.replace(dims + "(", "Nd(")
        assert repr(ours) == expected.replace("Upsample(", "UpsampleNd(").replace(
            "Unfold(", "UnfoldNd(")


@pytest.mark.parametrize("module, fields", [
    (ConvNd(3, 8, 3, padding=(1, 0, 1, 0), dilation=2, groups=1, bias=False,
            padding_mode="circular", spatial_dims=4),
     ["ConvNd(3, 8", "kernel_size=(3, 3, 3, 3)", "padding=(1, 0, 1, 0)",
      "dilation=(2, 2, 2, 2)", "bias=False", "padding_mode=circular"]),
    (ConvTransposeNd(2, 4, 2, stride=3, output_padding=1, spatial_dims=4),
     ["ConvTransposeNd(2, 4", "stride=(3, 3, 3, 3)", "output_padding=(1, 1, 1, 1)"]),
    (MaxPoolNd(2, stride=1, ceil_mode=True, spatial_dims=4),
     ["kernel_size=2", "stride=1", "ceil_mode=True", "spatial_dims=4"]),
    (AvgPoolNd((2, 2, 2, 2)), ["kernel_size=(2, 2, 2, 2)", "spatial_dims=4"]),
    (AdaptiveMaxPoolNd((1, 2, 3, 4)), ["output_size=(1, 2, 3, 4)"]),
    (MaxUnpoolNd(2, spatial_dims=4), ["kernel_size=(2, 2, 2, 2)", "stride=(2, 2, 2, 2)"]),
    (BatchNormNd(7, eps=1e-3, spatial_dims=4), ["BatchNormNd(7", "eps=0.001", "spatial_dims=4"]),
    (UpsampleNd(size=(3, 4, 5, 6), mode="nearest"), ["size=(3, 4, 5, 6)", "mode='nearest'"]),
    (PadNd(2, "reflect", spatial_dims=4), ["padding=(2, 2, 2, 2, 2, 2, 2, 2)", "mode='reflect'"]),
    (PadNd((1, 2), value=3.5), ["padding=(1, 2)", "mode='constant'", "value=3.5"]),
    (FoldNd((4, 4, 4, 4), 2), ["output_size=(4, 4, 4, 4)", "kernel_size=2", "spatial_dims=4"]),
])
def test_repr_shows_the_key_fields(module, fields):
    text = repr(module)
    for field in fields:
        assert field in text, (field, text)


@pytest.mark.parametrize("module, n", [
    (ConvNd(2, 2, (3, 3, 3)), 3),
    (ConvNd(2, 2, 3, stride=(1, 1)), 2),
    (ConvTransposeNd(2, 2, 3, output_padding=(0, 0, 0, 0)), 4),
    (MaxPoolNd(2), None),
    (MaxPoolNd(2, stride=(1,) * 4), 4),
    (AdaptiveAvgPoolNd((None, 2)), 2),
    (BatchNormNd(3), None),
    (UpsampleNd(scale_factor=(2, 2, 2, 2, 2)), 5),
    (PadNd((1, 1, 2, 2, 3, 3, 4, 4)), 4),
    (PadNd(1), None),
    (UnfoldNd(2, dilation=(1, 1, 1)), 3),
    (FoldNd(4, (2, 2, 2, 2)), 4),
])
def test_spatial_dims_resolved_from_tuple_arguments(module, n):
    assert module.spatial_dims == n


@pytest.mark.parametrize("build, error, match", [
    (lambda: ConvNd(3, 8, 3), ValueError, "spatial_dims"),
    (lambda: ConvTransposeNd(3, 8, 3), ValueError, "spatial_dims"),
    (lambda: FoldNd(4, 2), ValueError, "spatial_dims"),
    (lambda: ConvNd(3, 8, (3, 3), spatial_dims=3), ValueError, "conflicting"),
    (lambda: ConvNd(3, 8, (3, 3), stride=(1, 1, 1)), ValueError, "conflicting"),
    (lambda: MaxPoolNd((2, 2), stride=(1, 1, 1)), ValueError, "conflicting"),
    (lambda: AdaptiveAvgPoolNd((2, 2), spatial_dims=3), ValueError, "conflicting"),
    (lambda: UpsampleNd(size=(4, 4), spatial_dims=4), ValueError, "conflicting"),
    (lambda: PadNd((1, 1, 1, 1), spatial_dims=3), ValueError, "conflicting"),
    (lambda: BatchNormNd(3, spatial_dims=0), ValueError, "spatial_dims must be an int >= 1"),
    (lambda: ConvNd(3, 8, 3, spatial_dims=2.0), ValueError, "spatial_dims must be an int"),
    (lambda: ConvNd(3, 8, 3, padding_mode="mirror", spatial_dims=4), ValueError,
     "padding_mode"),
    (lambda: ConvTransposeNd(3, 8, 3, padding_mode="reflect", spatial_dims=4), ValueError,
     "zeros"),
    (lambda: ConvTransposeNd(3, 8, 3, padding="same", spatial_dims=4), ValueError, "padding"),
    (lambda: ConvNd(3, 8, 3, groups=2, spatial_dims=4), ValueError,
     "in_channels must be divisible by groups"),
    (lambda: ConvNd(4, 6, 3, groups=4, spatial_dims=4), ValueError,
     "out_channels must be divisible by groups"),
    (lambda: ConvNd(4, 6, 3, groups=0, spatial_dims=4), ValueError, "groups"),
    (lambda: ConvNd(4, 6, 3, stride=2, padding="same", spatial_dims=4), ValueError, "strided"),
    (lambda: ConvNd(4, 6, 3, padding="full", spatial_dims=4), ValueError, "padding string"),
    (lambda: ConvNd(4, 6, (3, 0, 3, 3)), ValueError, "kernel_size must be > 0"),
    (lambda: ConvNd(4, 6, 3, stride=0, spatial_dims=4), ValueError, "stride must be > 0"),
    (lambda: ConvNd(4, 6, 3, padding=-1, spatial_dims=4), ValueError, "padding must be >= 0"),
    (lambda: ConvNd(4, 6, 3.0, spatial_dims=4), ValueError, "kernel_size must be an int"),
    (lambda: PadNd((1, 1, 1)), ValueError, "2N"),
    (lambda: PadNd(1, mode="mirror"), ValueError, "mode must be one of"),
    (lambda: PadNd("1"), ValueError, "padding must be an int"),
])
def test_construction_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_forward_errors_name_the_problem():
    conv = ConvNd(4, 8, 3, spatial_dims=4)
    with pytest.raises((ValueError, RuntimeError), match="channel"):
        conv(torch.randn(1, 3, 5, 5, 5, 5))
    with pytest.raises(ValueError, match="spatial"):
        conv(torch.randn(4, 5, 5))  # neither batched nor unbatched 4-D
    norm = BatchNormNd(4)
    with pytest.raises(ValueError, match="rank >= 3"):
        norm(torch.randn(2, 4))
    with pytest.raises(ValueError, match="num_features=4"):
        norm(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="rank 4"):
        BatchNormNd(4, spatial_dims=2)(torch.randn(2, 4, 5))
    convt = ConvTransposeNd(2, 2, 3, spatial_dims=4)
    with pytest.raises(ValueError, match="shape"):
        convt(torch.randn(2, 5), output_size=(3, 3, 3, 3))
    with pytest.raises(ValueError, match="PadNd"):
        PadNd(1)(torch.randn(5))


def test_torch_tools_recognize_the_modules_as_torchs_bases():
    # BatchNormNd is a torch _BatchNorm: SyncBatchNorm conversion (DDP) takes it, state included.
    norm = BatchNormNd(3, spatial_dims=4)
    with torch.no_grad():
        norm.running_mean.fill_(0.5)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(norm))[0]
    assert isinstance(converted, nn.SyncBatchNorm)
    assert torch.equal(converted.running_mean, norm.running_mean)
    assert isinstance(ConvNd(2, 2, 3, spatial_dims=4), nn.modules.conv._ConvNd)
