"""The search-space language: membership, JSON round trips, mutation, crossover, counting, encoding, Optuna."""

from __future__ import annotations

import itertools
import json
import random

import optuna
import pytest
from torch import nn

from archlab.errors import SpaceError
from archlab.space import Arch, Space, choice, integer, optional, real, repeat


def make_space() -> Space:
    return Space(
        lambda a: a,
        stages=repeat(dict(mixer=choice(["pool", "attn", "conv"]), depth=integer(1, 3)), count=integer(1, 3)),
        act=choice([nn.ReLU, nn.GELU]),
        extra=optional(dict(k=choice([3, 5]))),
        head=choice({"linear": dict(bias=choice([True, False])), "mlp": dict(hidden=integer(8, 32, step=8))}),
        const=7,
    )


def test_size_matches_enumeration_and_formula():
    s = make_space()
    # stages: 9 + 9^2 + 9^3; act 2; extra 1 + 2; head 2 + 4; constant 1
    assert s.size() == (9 + 81 + 729) * 2 * 3 * 6
    archs = list(s.enumerate())
    assert len(archs) == s.size()
    assert len(set(archs)) == len(archs)  # every enumerated arch is distinct
    for a in random.Random(0).sample(archs, 200):
        assert a in s


def test_enumeration_limit_is_a_clear_error():
    s = make_space()
    with pytest.raises(SpaceError, match="enumeration limit"):
        next(s.enumerate(limit=100))
    with pytest.raises(SpaceError, match="infinitely many"):
        next(Space(lr=real(1e-4, 1e-1, log=True)).enumerate())


def test_arch_json_round_trip_is_exact_and_hashable():
    s = make_space()
    for seed in range(50):
        a = s.sample(seed)
        b = Arch.from_json(a.to_json())
        assert a == b and hash(a) == hash(b) and a.key == b.key
        assert json.loads(a.to_json()) == a.to_dict()
        assert b in s
    # 1 and 1.0 and True stay distinct, as in JSON
    assert Arch({"x": 1}) != Arch({"x": 1.0}) != Arch({"x": True})
    assert len({Arch({"x": 1}), Arch({"x": 1.0}), Arch({"x": True})}) == 3


def test_arch_survives_pickling_as_an_equal_arch():
    # archs travel to worker processes by pickle
    import pickle

    for seed in range(10):
        a = make_space().sample(seed)
        b = pickle.loads(pickle.dumps(a))
        assert a == b and hash(a) == hash(b) and b.key == a.key and isinstance(b.tree, type(a.tree))


def test_arch_is_immutable():
    a = make_space().sample(0)
    with pytest.raises(TypeError):
        a["const"] = 3  # type: ignore[index]
    with pytest.raises(AttributeError):
        a.tree.foo = 1  # type: ignore[attr-defined]
    assert isinstance(a["stages"], tuple)


def test_sample_is_deterministic_under_seed_and_covers_options():
    s = make_space()
    assert s.sample(3) == s.sample(3)
    seen = {s.sample(i)["stages"][0]["mixer"] for i in range(100)}
    assert seen == {"pool", "attn", "conv"}
    counts = {len(s.sample(i)["stages"]) for i in range(100)}
    assert counts == {1, 2, 3}


def _distance(s: Space, a: Arch, b: Arch) -> int:
    """Number of differing Optuna params (decisions), counting a changed repeat count as one."""
    pa, pb = s.to_params(a), s.to_params(b)
    return sum(1 for k in set(pa) | set(pb) if pa.get(k, object()) != pb.get(k, object()))


def test_mutation_changes_exactly_one_decision():
    s = Space(lambda a: a, stages=repeat(dict(mixer=choice(["pool", "attn", "conv"]), depth=integer(1, 3)), 3),
              act=choice(["relu", "gelu"]), width=integer(8, 64, step=8))
    rng = random.Random(0)
    for i in range(300):
        a = s.sample(i)
        b = s.mutate(a, rng)
        assert b != a and b in s
        assert _distance(s, a, b) == 1
        if a["width"] != b["width"]:
            assert abs(a["width"] - b["width"]) == 8  # integer neighbours are one step away


def test_mutation_of_repeat_count_grows_or_shrinks_by_one():
    s = Space(layers=repeat(choice(["a", "b"]), count=integer(1, 4)))
    rng = random.Random(1)
    for i in range(200):
        a = s.sample(i)
        b = s.mutate(a, rng)
        if len(a["layers"]) != len(b["layers"]):
            assert abs(len(a["layers"]) - len(b["layers"])) == 1
            n = min(len(a["layers"]), len(b["layers"]))
            assert a["layers"][:n] == b["layers"][:n]  # the common prefix is kept


def test_mutation_reaches_every_neighbour_kind():
    s = make_space()
    a = s.sample(5)
    rng = random.Random(0)
    changed = set()
    for _ in range(500):
        b = s.mutate(a, rng)
        changed |= {k for k in a if a[k] != b[k]}
    assert changed == {"stages", "act", "extra", "head"}


def test_single_arch_space_cannot_mutate():
    with pytest.raises(SpaceError, match="single architecture"):
        Space(x=choice([1])).mutate(Arch({"x": 1}))


def test_crossover_takes_each_decision_from_a_parent():
    s = Space(a=choice([1, 2]), b=choice(["x", "y"]), c=integer(0, 9), d=repeat(integer(0, 5), count=2))
    p, q = Arch({"a": 1, "b": "x", "c": 0, "d": [0, 0]}), Arch({"a": 2, "b": "y", "c": 9, "d": [5, 5]})
    children = {s.crossover(p, q, seed=i) for i in range(200)}
    for child in children:
        assert child in s
        for k in ("a", "b", "c"):
            assert child[k] in (p[k], q[k])
        assert all(v in (0, 5) for v in child["d"])
    assert len(children) > 10  # genuinely mixes rather than copying one parent


def test_encoding_is_fixed_length_and_injective_on_the_space():
    s = make_space()
    vectors = {}
    for a in itertools.islice(s.enumerate(), 0, None, 7):
        v = s.encode(a)
        assert v.shape == (s.encoding_size,)
        key = v.tobytes()
        assert key not in vectors, f"{a} and {vectors.get(key)} encode the same"
        vectors[key] = a


def test_optuna_suggest_round_trips_through_enqueue():
    s = make_space()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    for seed in range(20):
        a = s.sample(seed)
        study.enqueue_trial(s.to_params(a))
        trial = study.ask()
        assert s.suggest(trial) == a
        assert trial.params == s.to_params(a)
        study.tell(trial, 0.0)
    # define-by-run sampling only ever produces archs of the space
    study2 = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    for _ in range(10):
        t = study2.ask()
        assert s.suggest(t) in s
        study2.tell(t, random.random())


def test_build_sees_resolved_callables():
    s = Space(lambda a: a["act"](), act=choice([nn.ReLU, nn.GELU]))
    assert isinstance(s.build(Arch({"act": "GELU"})), nn.GELU)


@pytest.mark.parametrize(
    "arch, message",
    [
        ({"stages": [], "act": "ReLU", "extra": None, "head": {"option": "linear", "bias": True}, "const": 7},
         "repetitions"),
        ({"stages": [{"mixer": "fft", "depth": 1}], "act": "ReLU", "extra": None,
          "head": {"option": "linear", "bias": True}, "const": 7}, "not one of the options"),
        ({"stages": [{"mixer": "pool", "depth": 9}], "act": "ReLU", "extra": None,
          "head": {"option": "linear", "bias": True}, "const": 7}, "not an integer in"),
        ({"stages": [{"mixer": "pool", "depth": 1}], "act": "ReLU", "extra": None,
          "head": {"option": "conv"}, "const": 7}, "option 'conv'"),
        ({"stages": [{"mixer": "pool", "depth": 1}], "act": "ReLU", "extra": None,
          "head": {"option": "linear", "bias": True}}, "missing field"),
        ({"stages": [{"mixer": "pool", "depth": 1}], "act": "ReLU", "extra": None,
          "head": {"option": "linear", "bias": True}, "const": 7, "bogus": 1}, "unknown field"),
        ({"stages": [{"mixer": "pool", "depth": True}], "act": "ReLU", "extra": None,
          "head": {"option": "linear", "bias": True}, "const": 7}, "not an integer"),
    ],
)
def test_foreign_arch_is_rejected_with_its_path(arch, message):
    with pytest.raises(SpaceError, match=message):
        make_space().validate(arch)


def test_malformed_json_and_space_declarations():
    with pytest.raises(SpaceError, match="malformed"):
        Arch.from_json("{not json")
    with pytest.raises(SpaceError, match="object"):
        Arch.from_json("[1, 2]")
    with pytest.raises(SpaceError, match="at least one option"):
        choice([])
    with pytest.raises(SpaceError, match="appears twice"):
        choice([3, 3])
    with pytest.raises(SpaceError, match="low <= high"):
        integer(5, 1)
    with pytest.raises(SpaceError, match="cannot use"):
        Space(x=object())
    with pytest.raises(SpaceError, match="at least one field"):
        Space()
    with pytest.raises(SpaceError, match="count must be"):
        repeat(choice([1, 2]), count="three")  # type: ignore[arg-type]
    with pytest.raises(SpaceError, match="probability"):
        optional(choice([1, 2]), p=1.5)
    with pytest.raises(SpaceError, match="must be a non-empty string"):
        Space(**{"a.b": choice([1, 2])})


def test_real_ranges_mutate_within_bounds():
    s = Space(lr=real(1e-4, 1e-1, log=True), wd=real(0.0, 0.1))
    rng = random.Random(0)
    a = s.sample(0)
    for _ in range(100):
        a = s.mutate(a, rng)
        assert 1e-4 <= a["lr"] <= 1e-1 and 0.0 <= a["wd"] <= 0.1
    assert Arch.from_json(a.to_json()) == a
