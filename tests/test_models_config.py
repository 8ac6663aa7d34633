"""ConfigurableModel: captured constructor config, atomic save, load by class or by registry."""
import enum
import json
import os

import pytest
import torch
from torch import nn

from ndops.models.config import ConfigurableModel


class Colour(enum.Enum):
    RED = "red"


class TinyNet(ConfigurableModel):
    def __init__(self, in_channels, widths=(4, 6), act="relu", colour=Colour.RED, **extra):
        super().__init__()
        self.extra = extra
        layers, c = [], in_channels
        for w in widths:
            layers += [nn.Linear(c, w), nn.ReLU()]
            c = w
        self.body = nn.Sequential(*layers)
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        return self.body(x)


class WiderNet(TinyNet):
    """A subclass whose __init__ calls the parent's: only its own arguments are recorded."""

    def __init__(self, in_channels, width=8):
        super().__init__(in_channels, widths=(width, width))


class InheritsInit(TinyNet):
    pass


def test_config_captures_defaults_tuples_enums_and_kwargs():
    net = TinyNet(3, widths=(5, 7), depth=2)
    assert net.config == {"in_channels": 3, "widths": [5, 7], "act": "relu", "colour": "red",
                          "depth": 2}
    json.dumps(net.config)
    net.config["widths"].append(9)  # a copy: the model's config cannot change from outside
    assert net.config["widths"] == [5, 7]


def test_subclass_records_only_outermost_init():
    assert WiderNet(2, width=3).config == {"in_channels": 2, "width": 3}
    assert InheritsInit(2).config["widths"] == [4, 6]


def test_from_config_accepts_lists_back():
    net = TinyNet(3, widths=(5, 7))
    clone = TinyNet.from_config(net.config)
    assert [p.shape for p in clone.parameters()] == [p.shape for p in net.parameters()]


@pytest.mark.parametrize("loader", ["class", "base"])
def test_save_load_round_trip(tmp_path, loader):
    net = TinyNet(3, widths=(5, 7))
    net.count.fill_(4)
    (tmp_path / "notes.txt").write_text("keep me")
    net.save(tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["class"] == "TinyNet" and "ndops_version" in record
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.pt", "notes.txt"]
    loaded = (TinyNet if loader == "class" else ConfigurableModel).load(tmp_path)
    assert type(loaded) is TinyNet and loaded.config == net.config
    assert loaded.count.item() == 4
    x = torch.randn(2, 3)
    torch.testing.assert_close(loaded(x), net(x))


def test_save_overwrites_and_creates_nested_dirs(tmp_path):
    target = tmp_path / "a" / "b"
    TinyNet(3).save(target)
    WiderNet(3, width=2).save(target)
    assert type(ConfigurableModel.load(target)) is WiderNet
    assert not [f for f in os.listdir(target) if f.endswith(".tmp")]


def test_load_wrong_class_and_missing_files(tmp_path):
    WiderNet(3).save(tmp_path)
    assert type(TinyNet.load(tmp_path)) is WiderNet  # a subclass is fine
    TinyNet(3).save(tmp_path)
    with pytest.raises(ValueError, match="holds a TinyNet, not a WiderNet"):
        WiderNet.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        TinyNet.load(tmp_path / "nowhere")


def test_load_unknown_class(tmp_path):
    TinyNet(3).save(tmp_path)
    record = json.loads((tmp_path / "config.json").read_text())
    record.update({"class": "Ghost", "qualname": "Ghost", "module": "no_such_module_xyz"})
    (tmp_path / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="unknown model class 'Ghost'"):
        ConfigurableModel.load(tmp_path)


def test_unserializable_config_fails_before_writing(tmp_path):
    net = TinyNet(3, act=nn.ReLU())
    assert isinstance(net.config["act"], nn.ReLU)
    with pytest.raises(TypeError, match=r"config\['act'\] is a ReLU"):
        net.save(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_varargs_rejected_at_class_creation():
    with pytest.raises(TypeError, match=r"\*args"):
        class Bad(ConfigurableModel):  # noqa: F841
            def __init__(self, *layers):
                super().__init__()


def test_base_from_config_is_an_error():
    with pytest.raises(TypeError, match="call it on the model class"):
        ConfigurableModel.from_config({})


def test_deepcopy_and_state_dict_unaffected():
    import copy
    net = TinyNet(3)
    clone = copy.deepcopy(net)
    assert clone.config == net.config
    assert set(net.state_dict()) == {"count", "body.0.weight", "body.0.bias", "body.2.weight",
                                     "body.2.bias"}
