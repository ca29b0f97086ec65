"""Module decisions decode to factories: ``module()`` nodes and :class:`Bound` options, in hand-made spaces and
in the metaformer and sequence spaces, whose genotypes stay names (and branches) as before."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab import zoo
from archlab.errors import SpaceError
from archlab.space import Arch, Bound, Module, Space, choice, create_space, integer, module, repeat


def test_a_module_decodes_to_its_factory_with_the_chosen_settings():
    space = Space(lambda a: a["head"](8),
                  head=choice({"linear": module("linear", nn.Linear, out_features=choice([2, 4]), bias=False),
                               "identity": module("identity", nn.Identity)}))
    arch = Arch({"head": {"option": "linear", "out_features": 4, "bias": False}})
    head = space.decode(arch)["head"]
    assert isinstance(head, Bound) and head.name == "linear" and dict(head.settings) == {"out_features": 4,
                                                                                          "bias": False}
    built = space.build(arch)
    assert isinstance(built, nn.Linear) and built.out_features == 4 and built.bias is None
    assert space.decode(Arch({"head": {"option": "identity"}}))["head"] == Bound("identity", nn.Identity)
    assert isinstance(space.build(Arch({"head": {"option": "identity"}})), nn.Identity)
    assert space.size() == 3 and {a["head"]["option"] for a in space.enumerate()} == {"linear", "identity"}
    assert repr(head) == "Bound('linear', out_features=4, bias=False)"


def test_bound_factories_are_values():
    a, b = Bound("m", nn.Linear, {"out_features": 2}), Bound("m", nn.Linear, {"out_features": 2})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Bound("m", nn.Linear, {"out_features": 3}) and a != Bound("n", nn.Linear, {"out_features": 2})
    assert a(3).in_features == 3 and a(3, out_features=5).out_features == 5  # call-time keywords win
    assert a.__name__ == "m"
    with pytest.raises(SpaceError, match="callable factory"):
        Bound("m", 3)  # type: ignore[arg-type]
    with pytest.raises(SpaceError, match="callable factory"):
        module("", nn.Identity)


def test_a_leaf_choice_of_bound_factories_records_names():
    options = [Bound("relu", nn.ReLU), Bound("gelu", nn.GELU)]
    space = Space(lambda a: a["act"](), act=choice(options), n=integer(1, 2))
    assert {a["act"] for a in space.enumerate()} == {"relu", "gelu"}
    assert isinstance(space.build(Arch({"act": "gelu", "n": 1})), nn.GELU)
    # a supernet finds every candidate factory from the decisions
    (act,) = [d for d in space.decisions() if d.path == "act"]
    assert act.node.options == options


def test_metaformer_stages_decode_to_mixer_factories(one_thread):
    space = create_space("metaformer", input_shape=(3, 16, 16), num_classes=4, mixers=["pooling", "sepconv"],
                         widths=(16,), max_depth=1)
    arch = space.sample(0)
    stage = space.decode(arch)["stages"][0]
    assert isinstance(stage["mixer"], Bound) and stage["mixer"].name == arch["stages"][0]["mixer"]
    assert stage["mixer"].func is zoo.get_mixer_spec(stage["mixer"].name).factory
    assert space.build(arch).eval()(torch.randn(1, 3, 16, 16)).shape == (1, 4)


def test_sequence_layers_decode_to_mixer_factories(one_thread):
    space = create_space("sequence", input_shape=(12,), num_classes=3, vocab_size=6, task="lm",
                         mixers=["gla", "mamba"], mixer_kwargs={"gla": {"num_heads": 2}}, widths=(32,),
                         max_depth=1, mlp_ratios=(0,))
    layers = space.root.fields["layers"].node
    assert all(isinstance(o, Module) for o in layers.options)
    mamba = space.decode(Arch({"layers": [{"option": "mamba", "d_state": 8}], "width": 32, "mlp_ratio": 0}))
    assert mamba["layers"][0] == Bound("mamba", zoo.get_mixer_spec("mamba").factory, {"d_state": 8})
    assert mamba["layers"][0](32).d_state == 8
    gla = space.decode(Arch({"layers": [{"option": "gla"}], "width": 32, "mlp_ratio": 0}))["layers"][0]
    assert gla.name == "gla" and dict(gla.settings) == {} and gla(32).num_heads == 2  # fixed keywords bound
    model = space.build(Arch({"layers": [{"option": "gla"}], "width": 32, "mlp_ratio": 0}))
    assert model.backbone.layers[0].mixer.num_heads == 2


def test_module_settings_are_struct_fields():
    space = Space(block=repeat(module("conv", nn.Conv2d, kernel_size=choice([1, 3]), padding=0), count=2))
    assert space.size() == 4
    assert space.to_params(space.sample(0)).keys() == {"block.0.kernel_size", "block.1.kernel_size"}
    assert space.fingerprint() != Space(block=repeat(dict(kernel_size=choice([1, 3]), padding=0),
                                                     count=2)).fingerprint()
