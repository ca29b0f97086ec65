"""SequenceModel: with every registered causal sequence mixer, step decoding equals the full forward, state carried
across calls equals one long call, the whole model is causal; it is the Mamba LM when built like one; bad inputs
and configurations raise UserError."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab import zoo
from archlab.errors import UserError
from archlab.zoo.mixers.mamba import Mamba
from archlab.zoo.models.sequence import SequenceModel

CAUSAL = zoo.list_mixers(layout="sequence", causal=True)
VOCAB, LENGTH = 11, 10


def _lm(mixer: str, dtype: torch.dtype = torch.float64, seed: int = 0, **kw) -> SequenceModel:
    torch.manual_seed(seed)
    kw = {"dim": 32, "depth": 2, "mlp_ratio": 2, "norm": "layernorm", "seq_len": LENGTH, **kw}
    # eval: the LMU's BatchNorm mixes positions with batch statistics while training
    return zoo.create_model("sequence_lm", mixer=mixer, vocab_size=VOCAB, **kw).to(dtype).eval()


def _ids(batch: int = 2, length: int = LENGTH, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_every_causal_sequence_mixer_is_covered():
    # the lists below are parametrised over whatever is registered; the four of this repository must be there
    assert {"gla", "lmu", "mamba", "ssd"} <= set(CAUSAL)


@pytest.mark.parametrize("mixer", CAUSAL)
def test_step_decoding_equals_the_full_forward(mixer, one_thread):
    model, x = _lm(mixer), _ids()
    with torch.no_grad():
        full = model(x)
        state, steps = None, []
        for t in range(LENGTH):
            logits, state = model.step(x[:, t], state)
            steps.append(logits)
    assert full.shape == (2, LENGTH, VOCAB)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mixer", CAUSAL)
def test_float32_step_decoding_matches_too(mixer, one_thread):
    model, x = _lm(mixer, torch.float32), _ids()
    with torch.no_grad():
        full = model(x)
        logits, state = model(x[:, :4], return_state=True)  # a prompt read at once, then steps
        steps = [logits]
        for t in range(4, LENGTH):
            logits_t, state = model.step(x[:, t], state)
            steps.append(logits_t[:, None])
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-4)


@pytest.mark.parametrize("mixer", CAUSAL)
def test_state_carried_across_calls_equals_one_long_call(mixer, one_thread):
    model, x = _lm(mixer), _ids()
    with torch.no_grad():
        full, last = model(x, return_state=True)
        first, state = model(x[:, :3], return_state=True)
        second, state = model(x[:, 3:], state, return_state=True)
        # the states after the two halves continue like the states after one call
        nxt = _ids(length=1, seed=5)[:, 0]
        a, _ = model.step(nxt, state)
        b, _ = model.step(nxt, last)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=0, atol=1e-5)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mixer", CAUSAL)
def test_the_whole_model_is_causal(mixer, one_thread):
    model, x = _lm(mixer), _ids()
    cut = 6
    y = x.clone()
    y[:, cut:] = (x[:, cut:] + 1 + torch.arange(LENGTH - cut)) % VOCAB  # every later token changed
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=1e-9)
    assert (a[:, cut:] - b[:, cut:]).abs().amax() > 1e-4  # the perturbation does reach the later positions


def test_a_hybrid_stack_decodes_and_generates(one_thread):
    layers = [{"mixer": "mamba", "d_state": 8}, {"mixer": "gla", "mlp_ratio": 0}, "lmu", "ssd"]
    model = _lm("mamba", layers=layers)
    assert [type(layer.mixer).__name__ for layer in model.backbone.layers][0] == "Mamba"
    assert model.backbone.layers[0].mixer.d_state == 8
    assert model.backbone.layers[1].mlp is None and model.backbone.layers[2].mlp is not None
    prompt = _ids(length=4)
    out = model.generate(prompt, 6)
    assert out.shape == (2, 10) and torch.equal(out[:, :4], prompt)
    with torch.no_grad():
        logits = model(out)
    # greedy: every new token is the argmax of the full forward at the position before it
    assert torch.equal(out[:, 4:], logits[:, 3:-1].argmax(-1))


def test_temperature_sampling_is_reproducible_and_in_range(one_thread):
    model = _lm("gla")
    prompt = _ids(length=3)
    a = model.generate(prompt, 8, temperature=1.5, generator=torch.Generator().manual_seed(0))
    b = model.generate(prompt, 8, temperature=1.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (2, 11)
    assert int(a.min()) >= 0 and int(a.max()) < VOCAB
    assert torch.equal(model.generate(prompt, 0), prompt)


def test_built_like_the_mamba_lm_it_loads_its_weights_and_agrees(one_thread):
    torch.manual_seed(0)
    ref = zoo.create_model("mamba_lm", d_model=32, n_layer=2, vocab_size=VOCAB).eval()
    ours = zoo.create_model("sequence_lm", dim=32, depth=2, vocab_size=VOCAB)  # defaults: mamba, no MLP, RMSNorm
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    ours.eval()
    x = _ids(length=12)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)
        state = ref.allocate_inference_cache(2)
        ref_step, _ = ref.step(x[:, 0], state)
        our_step, _ = ours.step(x[:, 0], None)
    torch.testing.assert_close(our_step, ref_step, rtol=0, atol=1e-6)
    assert ours.lm_head.weight is ours.backbone.embedding.weight


def test_classifier_on_series_reads_the_last_position(one_thread):
    torch.manual_seed(0)
    model = zoo.create_model("sequence_classifier", layers=["mamba", "gla"], dim=16, in_chans=3, num_classes=4,
                             seq_len=12).double().eval()
    x = torch.randn(2, 3, 12, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 4)
        # the logits at each prefix, by decoding one time step at a time, end at the full forward's logits
        state = None
        for t in range(12):
            step_out, state = model.step(x[:, :, t], state)
            prefix = model(x[:, :, :t + 1])
            torch.testing.assert_close(step_out, prefix, rtol=0, atol=1e-5)
    torch.testing.assert_close(step_out, out, rtol=0, atol=1e-5)
    mean = zoo.create_model("sequence_classifier", mixer="lmu", dim=16, in_chans=3, num_classes=4, pool="mean")
    mean.eval()
    with torch.no_grad():
        feats = mean.forward_features(x.float())
        torch.testing.assert_close(mean(x.float()), mean.head(feats.mean(1)))
    with pytest.raises(UserError, match="pool='last'"):
        mean.step(x[:, :, 0].float(), None)


def test_token_classifier_and_the_lmu_window():
    model = zoo.create_model("sequence_classifier", mixer="lmu", vocab_size=7, num_classes=3, seq_len=40)
    assert model(torch.randint(0, 7, (2, 40))).shape == (2, 3)
    # seq_len reaches the mixer as resolution (1, L): the LMU's theta is the sequence length, as in LMUFormer
    assert model.backbone.layers[0].mixer.lmu.theta == 40.0


def test_wrong_inputs_raise_clear_errors():
    lm = _lm("gla", torch.float32)
    with pytest.raises(UserError, match="sequence_lm: expected integer token ids"):
        lm(torch.randn(2, LENGTH))
    with pytest.raises(UserError, match=r"token ids \(B, L\)"):
        lm(_ids()[0])
    with pytest.raises(UserError, match=r"token ids \(B,\)"):
        lm.step(_ids(), None)
    with pytest.raises(UserError, match="at least one token"):
        lm(torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(UserError, match="2 per-layer states"):
        lm(_ids(), [None])
    clf = zoo.create_model("sequence_classifier", dim=16, in_chans=2)
    with pytest.raises(UserError, match=r"sequence_classifier: expected a float series \(B, 2, L\)"):
        clf(torch.randn(2, 3, 8))
    with pytest.raises(UserError, match="float series"):
        clf(torch.zeros(2, 2, 8, dtype=torch.long))
    with pytest.raises(UserError, match="generate"):
        clf.generate(_ids(), 2)


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(UserError, match="not causal"):
        zoo.create_model("sequence_lm", mixer="attention", dim=32)
    with pytest.raises(UserError, match="image maps"):
        zoo.create_model("sequence_lm", mixer="pooling", dim=32)
    with pytest.raises(UserError, match="unknown mixer"):
        zoo.create_model("sequence_lm", mixer="no_such_mixer")
    with pytest.raises(UserError, match="layer 0: mixer 'mamba'"):
        zoo.create_model("sequence_lm", layers=[{"mixer": "mamba", "bogus": 1}])
    with pytest.raises(UserError, match="exactly one of vocab_size"):
        SequenceModel(dim=8, layers=["gla"], vocab_size=5, in_chans=2)
    with pytest.raises(UserError, match="needs vocab_size"):
        SequenceModel(dim=8, layers=["gla"], in_chans=2, head="lm")
    with pytest.raises(UserError, match="num_classes"):
        SequenceModel(dim=8, layers=["gla"], in_chans=2, head="classify")
    with pytest.raises(UserError, match="unknown norm"):
        SequenceModel(dim=8, layers=["gla"], vocab_size=5, norm="batchnorm")
    with pytest.raises(UserError, match="non-empty list"):
        SequenceModel(dim=8, layers=[], vocab_size=5)


class _StatelessCausalMixer(nn.Module):
    """A causal mixer without state or step(): a running mean over the positions so far."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.cumsum(1) / torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[:, None]


def test_a_mixer_without_step_runs_forward_but_refuses_to_decode():
    model = _lm("mamba", torch.float32)
    model.backbone.layers[1].mixer = _StatelessCausalMixer()
    assert model(_ids()).shape == (2, LENGTH, VOCAB)
    with pytest.raises(UserError, match="has no step"):
        model.step(_ids()[:, 0], None)
    with pytest.raises(UserError, match="has no step"):
        model.generate(_ids(), 2)
    with pytest.raises(UserError, match="does not carry state"):
        model(_ids(), return_state=True)
    assert isinstance(model.backbone.layers[0].mixer, Mamba)
