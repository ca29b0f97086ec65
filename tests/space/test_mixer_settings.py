"""Mixers declare their searchable settings in the zoo's registry, and the sequence space reads its per-mixer
decisions from there (not from the factories' signatures), with the genotypes it always had."""

from __future__ import annotations

import pytest
from torch import nn

from archlab import zoo
from archlab.errors import UserError
from archlab.space import create_space
from archlab.space.sequence import state_kwarg
from archlab.zoo import _registry


@pytest.fixture
def scratch_mixers():
    """Names registered inside a test are removed after it."""
    before = set(_registry._MIXERS)
    yield
    for name in set(_registry._MIXERS) - before:
        del _registry._MIXERS[name]


def _lm_space(**kw):
    return create_space("sequence", input_shape=(16,), num_classes=2, vocab_size=9, task="lm", **kw)


def test_state_space_mixers_declare_their_state_sizes():
    for name in ("mamba", "ssd", "s4d"):
        assert dict(zoo.get_mixer_spec(name).settings) == {"d_state": (8, 16, 32)}
    assert dict(zoo.get_mixer_spec("lmu").settings) == {"memory_size": (16, 32, 64)}
    assert dict(zoo.get_mixer_spec("gla").settings) == {}
    with pytest.raises(TypeError):
        zoo.get_mixer_spec("mamba").settings["d_state"] = (4,)  # type: ignore[index]


def test_bind_fixes_declared_settings_only():
    spec = zoo.get_mixer_spec("mamba")
    assert spec.bind(d_state=8)(32).d_state == 8
    with pytest.raises(UserError, match="no searchable setting 'd_conv'"):
        spec.bind(d_conv=2)
    with pytest.raises(UserError, match="is not one of"):
        spec.bind(d_state=12)
    with pytest.raises(UserError, match="is not one of"):
        spec.bind(d_state=16.0)


@pytest.mark.parametrize("settings, message", [
    ({"d_state": ()}, "non-empty list"),
    ({"d_state": "16"}, "non-empty list"),
    ({"d state": (1,)}, "keyword name"),
    ({"d_state": (object(),)}, "JSON scalar"),
])
def test_bad_settings_are_refused_at_registration(settings, message, scratch_mixers):
    with pytest.raises(ValueError, match=message):
        zoo.register_mixer("zz_bad", layout="sequence", settings=settings)


def test_sequence_space_reads_settings_not_signatures(scratch_mixers):
    @zoo.register_mixer("zz_declared", layout="sequence", causal=True, settings={"d_state": (4, 8), "heads": (1, 2)})
    def declared(dim: int, *, resolution=None, d_state: int = 4, heads: int = 1) -> nn.Module:
        return nn.Identity()

    @zoo.register_mixer("zz_silent", layout="sequence", causal=True)
    def silent(dim: int, *, resolution=None, d_state: int = 4) -> nn.Module:  # takes d_state, declares nothing
        return nn.Identity()

    assert state_kwarg("zz_declared") == "d_state" and state_kwarg("zz_silent") is None
    space = _lm_space(mixers=["zz_declared", "zz_silent", "mamba"], widths=(32,), max_depth=1, mlp_ratios=(0,))
    genes = {a["layers"][0]["option"]: set() for a in space.enumerate()}
    for a in space.enumerate():
        genes[a["layers"][0]["option"]].add(tuple(sorted(a["layers"][0].items())))
    assert len(genes["zz_declared"]) == 4 and len(genes["zz_silent"]) == 1 and len(genes["mamba"]) == 3
    assert genes["zz_silent"] == {(("option", "zz_silent"),)}
    # the space's arguments still override the declared state sizes, and only those
    narrowed = _lm_space(mixers=["zz_declared", "mamba"], d_states=(16,), widths=(32,), max_depth=1, mlp_ratios=(0,))
    assert narrowed.size() == 2 + 1
    assert narrowed.spec["state_sizes"] == {"zz_declared": [16], "mamba": [16]}


def test_default_sequence_genotypes_are_unchanged():
    space = _lm_space(mixers=["gla", "mamba", "lmu", "ssd", "s4d"], widths=(32,), max_depth=1, mlp_ratios=(0,))
    layers = sorted((tuple(sorted(a["layers"][0].items())) for a in space.enumerate()), key=repr)
    want = [(("option", "gla"),)]
    want += [(("d_state", d), ("option", m)) for m in ("mamba", "ssd", "s4d") for d in (8, 16, 32)]
    want += [(("memory_size", n), ("option", "lmu")) for n in (16, 32, 64)]
    assert layers == sorted(want, key=repr)
