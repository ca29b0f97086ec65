"""The sequence space: exact size, conditional state sizes carried only by the mixers that have one, every
strategy runs on it, sampled archs build into the models they describe, JSON round trips and fixed-length
encodings."""

from __future__ import annotations

import pytest
import torch

from archlab import zoo
from archlab.errors import SpaceError
from archlab.search import create_strategy
from archlab.space import Arch, create_space, list_spaces
from archlab.space.sequence import state_kwarg
from archlab.study import EvalResult, Ledger

SMALL = dict(mixers=["gla", "mamba", "lmu"], widths=(32, 64), max_depth=2, d_states=(8, 16), orders=(16, 32),
             mlp_ratios=(0, 2))


def _lm_space(**kw):
    return create_space("sequence", input_shape=(16,), num_classes=2, vocab_size=9, task="lm", **kw)


def test_registered_and_defaults_to_every_causal_sequence_mixer():
    assert "sequence" in list_spaces()
    space = _lm_space()
    assert space.root.fields["layers"].node.keys == zoo.list_mixers(layout="sequence", causal=True)


def test_state_size_keywords():
    assert state_kwarg("mamba") == "d_state" and state_kwarg("ssd") == "d_state"
    assert state_kwarg("lmu") == "memory_size"
    assert state_kwarg("gla") is None


def test_size_is_exact_and_enumeration_agrees():
    # per layer: gla (no decision) 1 + mamba x 2 d_states + lmu x 2 orders = 5 options; depth 1..2 gives
    # 5 + 25 = 30 layer stacks; times 2 widths and 2 MLP ratios
    space = _lm_space(**SMALL)
    assert space.size() == 30 * 2 * 2
    archs = list(space.enumerate())
    assert len(archs) == len(set(archs)) == 120
    assert all(a in space for a in archs)


def test_layers_carry_only_the_decisions_their_mixer_uses():
    space = _lm_space(**SMALL)
    want = {"gla": {"option"}, "mamba": {"option", "d_state"}, "lmu": {"option", "memory_size"}}
    seen = set()
    for seed in range(60):
        for arch in (space.sample(seed), space.mutate(space.sample(seed), seed)):
            for layer in arch["layers"]:
                assert set(layer) == want[layer["option"]], layer
                seen.add(layer["option"])
    assert seen == set(want)
    # a state size on a mixer without one, or a missing one, is not in the space
    assert {"layers": [{"option": "gla", "d_state": 8}], "width": 32, "mlp_ratio": 0} not in space
    assert {"layers": [{"option": "mamba"}], "width": 32, "mlp_ratio": 0} not in space
    assert {"layers": [{"option": "mamba", "d_state": 12}], "width": 32, "mlp_ratio": 0} not in space


def test_sampled_archs_build_into_the_models_they_describe(one_thread):
    space = _lm_space(**SMALL)
    x = torch.randint(0, 9, (2, 16))
    for seed in range(4):
        arch = space.sample(seed)
        model = space.build(arch).eval()
        assert model(x).shape == (2, 16, 9)
        assert model.dim == arch["width"] and len(model.backbone.layers) == len(arch["layers"])
        for layer, gene in zip(model.backbone.layers, arch["layers"], strict=True):
            assert layer.mixer_name == gene["option"]
            assert (layer.mlp is None) == (arch["mlp_ratio"] == 0)
            if gene["option"] == "mamba":
                assert layer.mixer.d_state == gene["d_state"]
            if gene["option"] == "lmu":
                assert layer.mixer.memory_size == gene["memory_size"]
                assert layer.mixer.lmu.theta == 16.0  # theta = the sequence length


def test_series_classification_builds_with_every_registered_mixer(one_thread):
    space = create_space("sequence", input_shape=(3, 20), num_classes=5, widths=(32,), max_depth=1)
    x = torch.randn(2, 3, 20)
    names = space.root.fields["layers"].node.keys
    for arch in space.enumerate():
        model = space.build(arch).eval()
        assert model(x).shape == (2, 5)
    assert len(names) >= 4


def test_token_classification(one_thread):
    space = create_space("sequence", input_shape=(12,), num_classes=3, vocab_size=6, **SMALL)
    arch = space.sample(3)
    assert space.build(arch).eval()(torch.randint(0, 6, (4, 12))).shape == (4, 3)


def test_json_round_trip_and_fixed_length_encodings():
    space = _lm_space()
    lengths = set()
    for seed in range(40):
        arch = space.sample(seed)
        back = Arch.from_json(arch.to_json())
        assert back == arch and space.validate(back) == arch
        assert space.decode(back) == space.decode(arch)
        lengths.add(len(space.encode(arch)))
    assert lengths == {space.encoding_size}


@pytest.mark.parametrize("strategy", ["random", "rea", "tpe"])
def test_every_strategy_asks_and_is_told(strategy, tmp_path, one_thread):
    space = _lm_space(**SMALL)
    kw = {"population_size": 4} if strategy == "rea" else {}
    s = create_strategy(strategy, space, seed=0, **kw)
    ledger = Ledger(f"journal:///{tmp_path}/l.log", ["accuracy"], create=True, space=space)
    asked = []
    for _ in range(12):  # past TPE's 10 start-up trials and REA's population of 4
        arch = s.ask()
        assert arch in space
        # a fake objective (no training): fewer layers and narrower is "better"
        metrics = {"val_accuracy": 1.0 / (len(arch["layers"]) * arch["width"]), "params": 1, "flops": 1,
                   "latency_ms": 1.0}
        s.tell(ledger.finish(ledger.start(arch), EvalResult("complete", metrics), memo=s.memo(arch)))
        asked.append(arch)
    assert len(set(asked)) == len(asked)
    assert [r.arch for r in ledger.records()] == asked
    space.build(asked[-1])  # what a strategy proposes builds


def test_bad_declarations_raise_space_errors():
    with pytest.raises(SpaceError, match=r"token ids \(L,\) or series \(C, L\)"):
        create_space("sequence", input_shape=(1, 8, 8), num_classes=2)
    with pytest.raises(SpaceError, match="needs vocab_size"):
        create_space("sequence", input_shape=(16,), num_classes=2)
    with pytest.raises(SpaceError, match="task 'lm'"):
        create_space("sequence", input_shape=(2, 16), num_classes=2, task="lm")
    with pytest.raises(SpaceError, match="task must be"):
        create_space("sequence", input_shape=(16,), num_classes=2, vocab_size=9, task="regress")
    with pytest.raises(SpaceError, match="not a causal sequence mixer"):
        _lm_space(mixers=["gla", "pooling"])
    with pytest.raises(SpaceError, match="no state size"):
        _lm_space(mixers=["gla"], state_sizes={"gla": [4]})
    with pytest.raises(SpaceError, match="not among"):
        _lm_space(mixers=["gla"], mixer_kwargs={"mamba": {}})
    with pytest.raises(SpaceError, match="widths"):
        _lm_space(widths=())


def test_state_sizes_override_and_fixed_mixer_kwargs():
    space = _lm_space(mixers=["mamba", "gla"], state_sizes={"mamba": []}, mixer_kwargs={"gla": {"num_heads": 2}},
                      widths=(32,), max_depth=1, mlp_ratios=(0,))
    assert space.size() == 2  # mamba at its default d_state, gla
    models = {a["layers"][0]["option"]: space.build(a) for a in space.enumerate()}
    assert models["mamba"].backbone.layers[0].mixer.d_state == 16
    assert models["gla"].backbone.layers[0].mixer.num_heads == 2
