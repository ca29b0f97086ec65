"""The supernet-ready space API: decisions over the maximal structure, from_params inverting to_params, the
smallest and largest archs, fingerprints, and the hot path that trusts archs the space made itself."""

from __future__ import annotations

import json
import random
from typing import Any

import optuna
import pytest
from torch import nn

from archlab.errors import SpaceError
from archlab.space import Arch, Decision, Space, choice, create_space, integer, optional, real, repeat


def rich_space() -> Space:
    """Every kind of node: repeats (integer and choice counts), branches (struct, value and constant options),
    optional parts, integers, reals, callables and constants."""
    return Space(
        lambda a: a,
        stages=repeat(dict(mixer=choice(["pool", "attn", "conv"]), depth=integer(1, 3)), count=integer(1, 3)),
        act=choice([nn.ReLU, nn.GELU]),
        extra=optional(dict(k=choice([3, 5]), lr=real(1e-4, 1e-1, log=True))),
        head=choice({"linear": dict(bias=choice([True, False])), "mlp": dict(hidden=integer(8, 32, step=8)),
                     "deep": repeat(choice([1, 2.5]), count=choice([0, 2])), "none": 0}),
        scale=choice([1, 1.0, True]),
        const=[7, "x"],
    )


def spaces() -> list[Space]:
    return [
        rich_space(),
        Space(**{f"e{i}": choice(["none", "skip", "c1", "c3", "pool"]) for i in range(6)}),
        Space(layers=repeat(choice({"a": integer(0, 4), "b": optional(repeat(choice(["x", "y"]), 2))}),
                            count=choice([3, 1, 2])),
              wd=real(0.0, 0.1)),
        create_space("metaformer", input_shape=(3, 32, 32), num_classes=10),
        create_space("sequence", input_shape=(16,), num_classes=2, vocab_size=9, task="lm"),
        create_space("ascan", input_shape=(3, 32, 32), num_classes=10),
    ]


def _holds(decision: Decision, params: dict[str, Any]) -> bool:
    return all(path in params and any(type(params[path]) is type(v) and params[path] == v for v in values)
               for path, values in decision.conditions)


@pytest.mark.parametrize("index", range(6))
def test_from_params_inverts_to_params(index):
    space = spaces()[index]
    rng = random.Random(index)
    for _ in range(150):
        a = space.sample(rng)
        params = space.to_params(a)
        b = space.from_params(params)
        assert b == a and b.key == a.key and hash(b) == hash(a)
        assert space.from_params(json.loads(json.dumps(params))) == a  # params survive a JSON round trip
        assert Arch(b.to_dict()) in space


@pytest.mark.parametrize("index", range(6))
def test_decisions_cover_every_param_with_its_conditions(index):
    space = spaces()[index]
    decisions = space.decisions()
    by_path = {d.path: d for d in decisions}
    assert len(by_path) == len(decisions)  # one decision per param name
    rng = random.Random(index)
    for _ in range(100):
        params = space.to_params(space.sample(rng))
        for path, value in params.items():
            d = by_path[path]
            assert _holds(d, params), (path, d.conditions)
            assert value in d.distribution().choices if d.kind == "choice" else d.low <= value <= d.high
        for d in decisions:
            if d.path not in params:
                assert not _holds(d, params), d  # a decision left out is one whose condition fails


def test_decisions_of_the_rich_space():
    decisions = {d.path: d for d in rich_space().decisions()}
    assert decisions["stages.count"].kind == "integer" and decisions["stages.count"].conditions == ()
    assert decisions["stages.0.mixer"].conditions == ()
    assert decisions["stages.2.depth"].conditions == (("stages.count", (3,)),)
    assert decisions["stages.1.depth"].conditions == (("stages.count", (2, 3)),)
    assert decisions["act"].options == ("ReLU", "GELU") and decisions["act"].node.options == [nn.ReLU, nn.GELU]
    assert decisions["extra.present"].options == (False, True)
    assert decisions["extra.lr"].kind == "real" and decisions["extra.lr"].log
    assert decisions["extra.lr"].conditions == (("extra.present", (True,)),)
    assert decisions["head<mlp>.hidden"].conditions == (("head", ("mlp",)),)
    assert decisions["head<mlp>.hidden"].step == 8
    assert decisions["head<deep>.count"].options == (0, 2)
    assert decisions["head<deep>.1"].conditions == (("head", ("deep",)), ("head<deep>.count", (2,)))
    assert "const" not in decisions and "head<none>" not in decisions


def test_decisions_are_a_study_search_space():
    # every decision maps onto the Optuna distribution the study records for its param
    space = rich_space()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    want = {d.path: d.distribution() for d in space.decisions()}
    for _ in range(30):
        trial = study.ask()
        space.suggest(trial)
        for name, dist in trial.distributions.items():
            assert want[name] == dist
        study.tell(trial, 0.0)


def test_from_params_rejects_bad_params_with_clear_errors():
    space = rich_space()
    a = space.sample(0)
    params = space.to_params(a)
    with pytest.raises(SpaceError, match="missing param 'act'"):
        space.from_params({k: v for k, v in params.items() if k != "act"})
    with pytest.raises(SpaceError, match=r"unknown param\(s\) \['bogus'\]"):
        space.from_params({**params, "bogus": 1})
    with pytest.raises(SpaceError, match="is not one of"):
        space.from_params({**params, "act": "Tanh"})
    with pytest.raises(SpaceError, match="not an integer in"):
        space.from_params({**params, "stages.count": 7})
    with pytest.raises(SpaceError, match="not one of"):
        space.from_params({**params, "scale": "1"})
    for scale in (1, 1.0, True):  # JSON-distinct options stay distinct
        assert space.from_params({**params, "scale": scale})["scale"].__class__ is type(scale)
    with pytest.raises(SpaceError, match="mapping"):
        space.from_params([("act", "ReLU")])  # type: ignore[arg-type]


def test_extreme_archs():
    space = rich_space()
    lo, hi = space.extreme("min"), space.extreme("max")
    assert lo in space and hi in space
    assert lo.to_dict() == {"stages": [{"mixer": "pool", "depth": 1}], "act": "ReLU", "extra": None,
                            "head": {"option": "linear", "bias": True}, "scale": 1, "const": [7, "x"]}
    assert hi.to_dict() == {"stages": [{"mixer": "conv", "depth": 3}] * 3, "act": "GELU",
                            "extra": {"k": 5, "lr": 1e-1}, "head": {"option": "none"}, "scale": True,
                            "const": [7, "x"]}
    # numbers take their smallest / largest, whatever the declared order
    s = Space(w=choice([64, 16, 32]), n=repeat(choice([2, 1]), count=choice([4, 2])), lr=real(0.5, 2.0))
    assert s.extreme("min").to_dict() == {"w": 16, "n": [1, 1], "lr": 0.5}
    assert s.extreme("max").to_dict() == {"w": 64, "n": [2, 2, 2, 2], "lr": 2.0}
    with pytest.raises(SpaceError, match="which must be 'min' or 'max'"):
        space.extreme("largest")


def test_extreme_metaformer_is_its_deepest_widest_net():
    space = create_space("metaformer", input_shape=(3, 32, 32), num_classes=10, widths=(16, 64, 32))
    hi, lo = space.extreme("max"), space.extreme("min")
    assert len(hi["stages"]) == space.root.fields["stages"].counts[-1] and len(lo["stages"]) == 1
    assert {s["width"] for s in hi["stages"]} == {64} and {s["depth"] for s in hi["stages"]} == {3}
    assert lo["stages"][0]["width"] == 16 and lo["mlp_ratio"] == 2 and hi["mlp_ratio"] == 4
    assert space.mutate(hi, 0) in space  # an extreme arch is the space's own


def test_fingerprint_pins_the_decisions_not_the_builder():
    def make(build=None, widths=(16, 32)) -> Space:
        return Space(build, name="x", w=choice(list(widths)), n=repeat(integer(1, 3), count=integer(1, 2)))

    fp = make().fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert make(lambda a: a).fingerprint() == fp  # the build function is not part of it
    assert make(widths=(16, 48)).fingerprint() != fp
    assert make(widths=(32, 16)).fingerprint() != fp  # option order changes encodings and params
    assert Space(w=choice([1])).fingerprint() != Space(w=choice([1.0])).fingerprint() != Space(
        w=choice([True])).fingerprint()
    assert rich_space().fingerprint() == rich_space().fingerprint()


def test_create_space_records_a_spec_that_rebuilds_it_after_the_zoo_grows():
    from archlab import zoo
    from archlab.zoo import _registry

    space = create_space("metaformer", input_shape=(3, 32, 32), num_classes=10)
    spec = space.spec
    assert spec["name"] == "metaformer" and spec["mixers"] == zoo.list_mixers(causal=False)
    assert create_space(**json.loads(json.dumps(spec))).fingerprint() == space.fingerprint()

    @zoo.register_mixer("zz_dummy_mixer", layout="image")
    def dummy(dim: int, *, resolution=None) -> nn.Module:
        return nn.Identity()

    try:
        assert create_space(**spec).fingerprint() == space.fingerprint()
        grown = create_space("metaformer", input_shape=(3, 32, 32), num_classes=10)
        assert grown.fingerprint() != space.fingerprint() and "zz_dummy_mixer" in grown.spec["mixers"]
    finally:
        del _registry._MIXERS["zz_dummy_mixer"]


def test_sequence_space_spec_names_mixers_and_state_sizes():
    space = create_space("sequence", input_shape=(16,), num_classes=2, vocab_size=9, task="lm", d_states=(8,))
    spec = space.spec
    assert spec["state_sizes"]["mamba"] == [8] and spec["state_sizes"]["lmu"] == [16, 32, 64]
    assert "gla" in spec["mixers"] and "gla" not in spec["state_sizes"]
    again = create_space(**json.loads(json.dumps(spec)))
    assert again.fingerprint() == space.fingerprint() and again.spec == spec


def test_space_made_archs_skip_validation_but_foreign_archs_do_not(monkeypatch):
    space = rich_space()
    a = space.sample(1)
    calls = []
    check = space.root.check
    monkeypatch.setattr(space.root, "check", lambda g, path: (calls.append(path), check(g, path)))
    b = space.mutate(a, 0)
    c = space.crossover(a, b, 0)
    space.encode(c), space.decode(c), space.to_params(c)
    assert calls == []
    d = Arch(c.to_dict())  # equal, but made outside the space: checked once, then trusted
    space.mutate(d, 0)
    space.mutate(d, 1)
    assert len(calls) == 1
    # an arch of another space is checked (and rejected) by this one
    other = Space(stages=choice(["a"]))
    with pytest.raises(SpaceError):
        other.mutate(a, 0)
    assert a not in other and a in space


def test_space_made_archs_are_exact_json_values():
    space = rich_space()
    rng = random.Random(0)
    a = space.sample(rng)
    for _ in range(200):
        a = space.mutate(a, rng) if rng.random() < 0.7 else space.crossover(a, space.sample(rng), rng)
        b = Arch.from_json(a.to_json())
        assert a == b and hash(a) == hash(b) and a.key == b.key
        assert b.key == json.dumps(json.loads(a.to_json()), sort_keys=True, separators=(",", ":"))
    assert Arch({"x": 1}) != Arch({"x": 1.0}) != Arch({"x": True}) != Arch({"x": 1})


def test_node_names_stay_importable_from_nodes_and_space():
    import archlab.space as space_pkg
    from archlab.space import _nodes

    for name in ("Choice", "Constant", "Integer", "Node", "Optional", "Real", "Repeat", "Struct", "as_node",
                 "choice", "integer", "optional", "real", "repeat", "Decision"):
        assert hasattr(_nodes, name)
    for name in _nodes.__all__:
        if name != "as_node":
            assert getattr(space_pkg, name) is getattr(_nodes, name)
