"""Mamba: the chunked scan equals the sequential reference scan (values, gradients, last state, strong decay);
state carried across calls and step() decoding equal one long call; the block is causal; names, shapes and
init follow state-spaces/mamba ``mamba_simple.py`` @ 52f57d6 and ``mixer_seq_simple.py``; bad input is a
UserError; a small Mamba LM learns selective copying; the mimetic initialisation starts the SSM as causal linear
attention that remembers, and its shifted keys key each position by the token before it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.zoo import create_mixer, create_model, get_mixer_spec, list_mixers, list_models
from archlab.zoo.mixers.mamba import (
    Mamba,
    MambaLMHeadModel,
    causal_depthwise_conv,
    default_chunk_size,
    mimetic_init_,
    selective_scan_chunked,
    selective_scan_ref,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops: a second thread only waits


def _scan_inputs(batch: int, dim: int, dstate: int, length: int, dtype: torch.dtype, seed: int = 0,
                 delta_shift: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    return {
        "u": rnd(batch, dim, length), "delta": rnd(batch, dim, length),
        # A = -exp(A_log) with A_log spread over the S4D-Real range [log 1, log 16] and beyond
        "A": -torch.exp(rnd(dim, dstate).clamp(-2, 3)),
        "B": rnd(batch, dstate, length), "C": rnd(batch, dstate, length),
        "D": rnd(dim), "z": rnd(batch, dim, length), "delta_bias": rnd(dim) + delta_shift,
        "initial_state": rnd(batch, dim, dstate),
    }


# --- the three forms of the selective scan ---------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 3, 16, 37, 64, 100])
@pytest.mark.parametrize("chunk_size", [None, 1, 7, 16])
def test_chunked_scan_equals_sequential_reference_float64(length: int, chunk_size: int | None) -> None:
    args = _scan_inputs(2, 6, 5, length, torch.float64, seed=length)
    ref, ref_last = selective_scan_ref(**args, delta_softplus=True, return_last_state=True)
    out, last = selective_scan_chunked(**args, delta_softplus=True, return_last_state=True, chunk_size=chunk_size)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(last, ref_last, rtol=0, atol=1e-10)


def test_chunked_scan_equals_reference_float32_and_without_optional_terms() -> None:
    args = _scan_inputs(2, 16, 16, 200, torch.float32)
    ref = selective_scan_ref(**args, delta_softplus=True)
    torch.testing.assert_close(selective_scan_chunked(**args, delta_softplus=True), ref, rtol=0, atol=1e-4)
    # without the optional terms, and delta given already positive (delta_softplus=False)
    bare = {k: args[k] for k in ("u", "A", "B", "C")} | {"delta": F.softplus(args["delta"])}
    torch.testing.assert_close(selective_scan_chunked(**bare), selective_scan_ref(**bare), rtol=0, atol=1e-4)


def test_chunked_scan_gradients_equal_the_reference() -> None:
    args = _scan_inputs(2, 4, 3, 29, torch.float64, seed=3)
    for t in args.values():
        t.requires_grad_(True)
    weights = torch.randn(2, 4, 29, dtype=torch.float64)
    grads = []
    for scan in (selective_scan_ref, selective_scan_chunked):
        out, last = scan(**args, delta_softplus=True, return_last_state=True)
        grads.append(torch.autograd.grad((out * weights).sum() + last.square().sum(), list(args.values())))
    for name, g_ref, g_chunked in zip(args, *grads, strict=True):
        torch.testing.assert_close(g_chunked, g_ref, rtol=0, atol=1e-10, msg=name)


def test_chunked_scan_is_stable_under_strong_decay() -> None:
    # delta ~ 20 and |A| up to 20: per-step log decays down to ~ -400, ~ -25,000 over a chunk of 64. A form that
    # used exp(-cumsum) would overflow; the chunked scan must stay finite and equal the reference.
    args = _scan_inputs(1, 8, 4, 4096, torch.float64, delta_shift=20.0)
    ref = selective_scan_ref(**args, delta_softplus=True)
    out = selective_scan_chunked(**args, delta_softplus=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    out32 = selective_scan_chunked(**{k: v.float() for k, v in args.items()}, delta_softplus=True)
    assert torch.isfinite(out32).all()
    torch.testing.assert_close(out32.double(), ref, rtol=0, atol=1e-3)


def test_default_chunk_size_is_ceil_sqrt() -> None:
    assert [default_chunk_size(n) for n in (1, 2, 4, 5, 64, 65, 4096)] == [1, 2, 2, 3, 8, 9, 64]


# --- the Mamba block -------------------------------------------------------------------------------------

def _mamba(d_model: int = 24, seed: int = 0, **kw) -> Mamba:
    torch.manual_seed(seed)
    m = Mamba(d_model, **kw).double()
    with torch.no_grad():  # move D and the conv off their init so that every term is exercised
        m.D.normal_()
    return m


def test_causal_conv_equals_the_reference_conv1d_call() -> None:
    m = _mamba()
    with torch.no_grad():
        m.conv1d.bias.normal_()
    x = torch.randn(2, 48, 11, dtype=torch.float64)
    # the reference: conv1d with padding d_conv - 1, keeping the first L outputs
    expected = m.conv1d(x)[..., :11]
    torch.testing.assert_close(causal_depthwise_conv(F.pad(x, (3, 0)), m.conv1d), expected, rtol=0, atol=1e-12)


def test_block_chunked_and_sequential_forms_agree() -> None:
    m = _mamba()
    x = torch.randn(3, 45, 24, dtype=torch.float64)
    y = m(x)
    m.scan = "sequential"
    torch.testing.assert_close(m(x), y, rtol=0, atol=1e-10)
    m.scan, m.chunk_size = "chunked", 4
    torch.testing.assert_close(m(x), y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("splits", [(20,), (2,), (1, 1, 1), (3, 17, 1), (44,)])
def test_carrying_state_across_calls_equals_one_long_call(splits: tuple[int, ...]) -> None:
    m = _mamba()
    x = torch.randn(2, 45, 24, dtype=torch.float64)
    full, full_state = m(x, return_state=True)
    pieces, state, start = [], None, 0
    for end in [*(sum(splits[:i + 1]) for i in range(len(splits))), 45]:
        out, state = m(x[:, start:end], state, return_state=True)
        pieces.append(out)
        start = end
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-10)
    torch.testing.assert_close(state.ssm_state, full_state.ssm_state, rtol=0, atol=1e-10)
    torch.testing.assert_close(state.conv_state, full_state.conv_state, rtol=0, atol=1e-12)


def test_step_decoding_equals_full_forward_at_every_position() -> None:
    m = _mamba()
    x = torch.randn(2, 30, 24, dtype=torch.float64)
    full, full_state = m(x, return_state=True)
    state = m.allocate_inference_cache(2, dtype=torch.float64)
    assert state.conv_state.shape == (2, 48, 4) and state.ssm_state.shape == (2, 48, 16)
    for t in range(30):
        out, state = m.step(x[:, t:t + 1], state)
        assert out.shape == (2, 1, 24)
        torch.testing.assert_close(out[:, 0], full[:, t], rtol=0, atol=1e-10)
        # constant memory: the cache never grows with t
        assert state.conv_state.shape == (2, 48, 4) and state.ssm_state.shape == (2, 48, 16)
    torch.testing.assert_close(state.ssm_state, full_state.ssm_state, rtol=0, atol=1e-10)
    # a prompt through forward, then decoding with step, is the same as forward on everything
    _, prompt_state = m(x[:, :12], return_state=True)
    out, _ = m.step(x[:, 12], prompt_state)
    torch.testing.assert_close(out, full[:, 12], rtol=0, atol=1e-10)


def test_block_is_causal() -> None:
    m = _mamba(16)
    x = torch.randn(1, 20, 16, dtype=torch.float64, requires_grad=True)
    out = m(x)
    for t in (0, 7, 19):
        (grad,) = torch.autograd.grad(out[0, t].sum(), x, retain_graph=True)
        influence = grad[0].abs().sum(-1)
        assert torch.all(influence[t + 1:] == 0), t
        assert torch.all(influence[: t + 1] > 0), t  # and it does see every earlier position
    # perturbing the future leaves the past exactly unchanged
    x2 = x.detach().clone()
    x2[:, 10:] += torch.randn_like(x2[:, 10:])
    torch.testing.assert_close(m(x2)[:, :10], out.detach()[:, :10], rtol=0, atol=0)


# Expected key -> shape, written out from state-spaces/mamba mamba_simple.py @ 52f57d6 for d_model=64:
# d_inner = expand * d_model = 128, dt_rank = ceil(64 / 16) = 4, d_state = 16, d_conv = 4, bias=False.
REFERENCE_MAMBA_64 = {
    "A_log": (128, 16),
    "D": (128,),
    "in_proj.weight": (256, 64),
    "conv1d.weight": (128, 1, 4),
    "conv1d.bias": (128,),
    "x_proj.weight": (4 + 2 * 16, 128),
    "dt_proj.weight": (128, 4),
    "dt_proj.bias": (128,),
    "out_proj.weight": (64, 128),
}


def test_parameter_names_and_shapes_equal_the_reference() -> None:
    m = Mamba(64)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == REFERENCE_MAMBA_64
    assert (m.d_inner, m.dt_rank, m.d_state) == (128, 4, 16)
    assert m.conv1d.groups == 128 and m.conv1d.padding == (3,)
    # a state dict in the reference's layout loads strictly
    ref_state = {k: torch.randn(s) for k, s in REFERENCE_MAMBA_64.items()}
    m.load_state_dict(ref_state, strict=True)
    assert Mamba(100).dt_rank == 7 and Mamba(100, dt_rank=3).x_proj.weight.shape == (3 + 32, 200)


def test_initialisation_follows_the_reference() -> None:
    torch.manual_seed(0)
    m = Mamba(256)  # d_inner 512: enough samples to see the ranges
    expected_a_log = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(512, 16)
    assert torch.equal(m.A_log.data, expected_a_log) and m.A_log.dtype == torch.float32
    assert torch.equal(m.D.data, torch.ones(512))
    dt = F.softplus(m.dt_proj.bias.detach().double())
    # softplus(bias) is log-uniform in [dt_min, dt_max] = [1e-3, 0.1]
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    log_dt = dt.log()
    lo, hi = math.log(1e-3), math.log(0.1)
    assert abs(log_dt.mean().item() - (lo + hi) / 2) < 0.2  # uniform in log space: mean mid-way
    assert ((log_dt - lo) / (hi - lo)).std().item() == pytest.approx((1 / 12) ** 0.5, abs=0.03)
    bound = m.dt_rank ** -0.5
    assert m.dt_proj.weight.abs().max() <= bound and m.dt_proj.weight.abs().max() > 0.9 * bound
    # the floor: a range entirely below dt_init_floor is lifted to it
    floored = F.softplus(Mamba(16, dt_min=1e-6, dt_max=1e-5).dt_proj.bias.detach().double())
    torch.testing.assert_close(floored, torch.full_like(floored, 1e-4), rtol=1e-4, atol=0)
    const = Mamba(32, dt_init="constant", dt_scale=2.0)
    assert torch.all(const.dt_proj.weight == 2.0 * 2 ** -0.5)


def test_mimetic_initialisation_changes_only_a_and_the_c_projection() -> None:
    torch.manual_seed(0)
    ref = Mamba(48)
    torch.manual_seed(0)
    mim = Mamba(48, mimetic=True)
    r, n = mim.dt_rank, mim.d_state
    changed = {k for k, v in mim.state_dict().items() if not torch.equal(v, ref.state_dict()[k])}
    assert changed == {"A_log", "x_proj.weight"}
    w = mim.x_proj.weight
    assert torch.equal(w[:r + n], ref.x_proj.weight[:r + n]) and torch.equal(w[r + n:], w[r:r + n])
    A = -torch.exp(mim.A_log.detach())
    torch.testing.assert_close(A, (-0.01 * torch.arange(1, n + 1) / n).expand(96, n))
    # the in-place form equals the constructor flag; a_scale sets the largest |A|
    torch.manual_seed(0)
    in_place = mimetic_init_(Mamba(48)).state_dict()
    assert all(torch.equal(v, in_place[k]) for k, v in mim.state_dict().items())
    assert torch.exp(mimetic_init_(Mamba(16), a_scale=0.5).A_log).max().item() == pytest.approx(0.5)
    # conv_shift: the taps on the current and previous token become |w| + shift, nothing else changes
    torch.manual_seed(0)
    shifted = Mamba(48, mimetic=True, mimetic_conv_shift=0.5)
    changed = {k for k, v in shifted.state_dict().items() if not torch.equal(v, mim.state_dict()[k])}
    assert changed == {"conv1d.weight"}
    w, w0 = shifted.conv1d.weight[:, 0], ref.conv1d.weight[:, 0]
    torch.testing.assert_close(w[:, -2:], w0[:, -2:].abs() + 0.5)
    assert torch.equal(w[:, :-2], w0[:, :-2])
    with pytest.raises(UserError, match="mimetic_init_: expected a Mamba"):
        mimetic_init_(torch.nn.Linear(4, 4))
    with pytest.raises(UserError, match="a_scale"):
        mimetic_init_(Mamba(16), a_scale=0.0)
    with pytest.raises(UserError, match="conv_shift must be >= 0"):
        mimetic_init_(Mamba(16), conv_shift=-1.0)
    with pytest.raises(UserError, match="d_conv >= 2"):
        mimetic_init_(Mamba(16, d_conv=1), conv_shift=0.5)
    with pytest.raises(UserError, match="set mimetic=True"):
        Mamba(16, mimetic_conv_shift=0.5)


def test_mimetic_shifted_keys_key_each_position_by_the_token_before_it() -> None:
    torch.manual_seed(0)
    mim = Mamba(32, mimetic=True)
    torch.manual_seed(0)
    keyed = Mamba(32, mimetic=True, mimetic_shifted_keys=True).double()
    changed = {k for k, v in keyed.state_dict().items() if not torch.equal(v.float(), mim.state_dict()[k])}
    assert changed == {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight"}
    d, r, n, half = keyed.d_inner, keyed.dt_rank, keyed.d_state, keyed.d_inner // 2
    # the gate's half of in_proj and x_proj's delta rows stay; the previous-token channels copy the current ones
    assert torch.equal(keyed.in_proj.weight[d:].float(), mim.in_proj.weight[d:])
    assert torch.equal(keyed.x_proj.weight[:r].float(), mim.x_proj.weight[:r])
    assert torch.equal(keyed.in_proj.weight[half:d], keyed.in_proj.weight[:half])
    # B reads only the previous-token channels, C only the current-token ones
    assert not keyed.x_proj.weight[r:r + n, :half].any() and not keyed.x_proj.weight[r + n:, half:].any()
    x = torch.randn(3, 20, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        u, _, _, B, C, _ = keyed.ssm_inputs(x)
    # u: the current token on the first half of the channels, the previous token on the second
    torch.testing.assert_close(u[:, 1:, half:], u[:, :-1, :half])
    # B at each position is C at the position before; the first position has no previous token
    torch.testing.assert_close(B[:, 1:], C[:, :-1])
    assert B[:, 0].abs().max().item() == 0.0 and C.abs().mean().item() > 0.01
    # the same start in place; it is one or the other of the two convolution starts
    torch.manual_seed(0)
    in_place = mimetic_init_(Mamba(32), shifted_keys=True).state_dict()
    assert all(torch.equal(v, in_place[k]) for k, v in keyed.float().state_dict().items())
    with pytest.raises(UserError, match="pick one"):
        mimetic_init_(Mamba(16), conv_shift=0.5, shifted_keys=True)
    with pytest.raises(UserError, match="d_conv >= 2"):
        mimetic_init_(Mamba(16, d_conv=1), shifted_keys=True)
    with pytest.raises(UserError, match="d_inner >= 2"):
        mimetic_init_(Mamba(1, expand=1), shifted_keys=True)
    with pytest.raises(UserError, match="set mimetic=True"):
        Mamba(16, mimetic_shifted_keys=True)


def _ssm_against_linear_attention(mixer: Mamba, x: torch.Tensor) -> float:
    """Relative distance of the block's SSM output (before D and the gate) from causal linear attention with
    queries C, keys B, values delta * u and no decay."""
    u, _, dt, B, C, _ = (t.transpose(1, 2) for t in mixer.ssm_inputs(x))  # (B, ., L), the scan's layout
    y = selective_scan_ref(u, dt, -torch.exp(mixer.A_log), B, C, delta_bias=mixer.dt_proj.bias,
                           delta_softplus=True)
    delta = F.softplus(dt + mixer.dt_proj.bias[:, None])
    scores = torch.einsum("bnt,bns->bts", C, B).tril()  # (B, L, L): C_t . B_s for s <= t
    attention = torch.einsum("bts,bds->bdt", scores, delta * u)
    return ((y - attention).norm() / attention.norm()).item()


def test_mimetic_start_is_causal_linear_attention_that_remembers() -> None:
    # Trockman et al.: with A near zero and C tied to B, the SSM over 256 steps is (almost exactly) linear
    # attention whose scores C_t . B_s form a positive semi-definite Gram matrix; the reference start is not
    x = torch.randn(2, 256, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(0)
        mim = Mamba(32, mimetic=True).double()
        torch.manual_seed(0)
        ref = Mamba(32).double()
        assert _ssm_against_linear_attention(mim, x) < 0.06
        assert _ssm_against_linear_attention(ref, x) > 0.5
        _, _, _, B, C, _ = mim.ssm_inputs(x)
        gram = C @ B.transpose(1, 2)
        torch.testing.assert_close(gram, gram.transpose(1, 2))
        assert torch.linalg.eigvalsh(gram).min() > -1e-9 * gram.abs().max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mimetic_shifted_starts_match_a_query_to_the_position_after_its_key(seed: int) -> None:
    # the induction pattern: token k at position 4, its value at 5, k asked again at 11. With the shifted
    # convolution the query's C scores position 5's B well above the others from the start; without it, not
    x = torch.randn(256, 12, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x[:, 11] = x[:, 4]

    def margin(**start) -> float:
        torch.manual_seed(seed)
        mixer = Mamba(32, mimetic=True, **start).double()
        with torch.no_grad():
            _, _, _, B, C, _ = mixer.ssm_inputs(x)
        scores = torch.einsum("bn,bsn->bs", C[:, 11], B)
        others = scores[:, [0, 1, 2, 3, 6, 7, 8, 9]]
        return ((scores[:, 5] - others.mean(1)) / others.std(1)).mean().item()

    shifted = margin(mimetic_conv_shift=0.5)
    assert shifted > 0.8 and abs(margin()) < 0.5
    # the shifted keys' exact lookup stands out further still (about 3.5 standard deviations)
    assert margin(mimetic_shifted_keys=True) > max(2.5, shifted + 1.0)


def test_bad_configuration_and_input_raise_user_errors() -> None:
    with pytest.raises(UserError, match="mamba: scan"):
        Mamba(16, scan="parallel")
    with pytest.raises(UserError, match="dt_min"):
        Mamba(16, dt_min=0.1, dt_max=0.01)
    with pytest.raises(UserError, match="dt_init"):
        Mamba(16, dt_init="zeros")
    with pytest.raises(UserError, match="mamba:"):
        Mamba(0)
    m = Mamba(16)
    with pytest.raises(UserError, match=r"mamba: expected input \(B, L, d_model\) with d_model=16"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(UserError, match="mamba: expected input"):
        m(torch.randn(5, 16))
    with pytest.raises(UserError, match="step takes one token"):
        m.step(torch.randn(2, 3, 16), m.allocate_inference_cache(2))
    with pytest.raises(UserError, match="expected a state"):
        m(torch.randn(2, 5, 16), m.allocate_inference_cache(3))
    with pytest.raises(UserError, match="selective_scan"):
        selective_scan_chunked(torch.randn(1, 4, 5), torch.randn(1, 4, 5), -torch.ones(4, 2), torch.randn(1, 2, 6),
                               torch.randn(1, 2, 6))


def test_registered_as_a_causal_sequence_mixer_for_every_width() -> None:
    spec = get_mixer_spec("mamba")
    assert spec.layout == "sequence" and spec.causal and "Mamba" in spec.paper
    assert "mamba" in list_mixers(causal=True) and "mamba" not in list_mixers(causal=False)
    for width in (16, 24, 32, 48, 64, 96, 128):
        mixer = create_mixer("mamba", width, resolution=(7, 7))
        x = torch.randn(2, 49, width)
        assert mixer(x).shape == x.shape


# --- the language model ----------------------------------------------------------------------------------

def test_lm_names_follow_the_reference_and_embeddings_are_tied() -> None:
    lm = create_model("mamba_lm", d_model=32, n_layer=2, vocab_size=50, pad_vocab_size_multiple=8)
    assert isinstance(lm, MambaLMHeadModel) and lm.vocab_size == 56
    keys = {k: tuple(v.shape) for k, v in lm.state_dict().items()}
    expected = {"backbone.embedding.weight": (56, 32), "backbone.norm_f.weight": (32,), "lm_head.weight": (56, 32)}
    for i in range(2):
        expected[f"backbone.layers.{i}.norm.weight"] = (32,)  # RMSNorm: a weight, no bias
        for name, tensor in Mamba(32).state_dict().items():
            expected[f"backbone.layers.{i}.mixer.{name}"] = tuple(tensor.shape)
    assert keys == expected
    assert lm.lm_head.weight is lm.backbone.embedding.weight
    # the reference's init: residual output projections shrunk by 1/sqrt(n_layer), embeddings N(0, 0.02)
    bound = 1 / math.sqrt(64) / math.sqrt(2)  # kaiming_uniform(a=sqrt 5) bound is 1/sqrt(fan_in)
    w = lm.backbone.layers[0].mixer.out_proj.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert lm.backbone.embedding.weight.std().item() == pytest.approx(0.02, rel=0.2)


def test_published_configuration_has_the_reference_parameter_count() -> None:
    assert {"mamba_130m", "mamba_370m", "mamba_790m", "mamba_1_4b", "mamba_2_8b", "mamba_lm"} <= set(
        list_models("mamba*"))
    with torch.device("meta"):
        lm = create_model("mamba_130m")
    # derived from mamba_simple.py for d_model 768 (d_inner 1536, dt_rank 48, d_state 16), 24 layers, and the
    # GPT-NeoX vocabulary 50277 padded to a multiple of 8 (50280), tied head
    d, e, r, n = 768, 1536, 48, 16
    per_layer = d * 2 * e + (e * 4 + e) + e * (r + 2 * n) + (r * e + e) + e * n + e + e * d + d
    expected = 24 * per_layer + 50280 * d + d
    assert sum(p.numel() for p in lm.parameters()) == expected == 129_135_360


def test_lm_step_and_generate_equal_full_forward() -> None:
    torch.manual_seed(0)
    lm = create_model("mamba_lm", d_model=16, n_layer=2, vocab_size=11).double().eval()
    ids = torch.randint(0, 11, (2, 14))
    logits = lm(ids)
    assert logits.shape == (2, 14, 11)
    states = lm.allocate_inference_cache(2, dtype=torch.float64)
    for t in range(14):
        step_logits, states = lm.step(ids[:, t], states)
        torch.testing.assert_close(step_logits, logits[:, t], rtol=0, atol=1e-10)
    out = lm.generate(ids[:, :5], max_new_tokens=6)
    expected = ids[:, :5]
    for _ in range(6):  # greedy decoding by recomputing the whole prefix each time
        expected = torch.cat([expected, lm(expected)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, expected)
    with pytest.raises(UserError, match="mamba_lm: expected integer token ids"):
        lm(torch.randn(2, 5))


def _selective_copying(g: torch.Generator, n: int, ctx: int, k: int, colors: int) -> tuple[torch.Tensor, ...]:
    # `k` coloured tokens (2..colors+1) at random places among `ctx` noise tokens (0), then `k` markers (1): the
    # model must output the coloured tokens in order, which needs content-based (selective) memory.
    x = torch.zeros(n, ctx + k, dtype=torch.long)
    pos = torch.rand(n, ctx, generator=g).argsort(1)[:, :k].sort(1).values
    tokens = torch.randint(2, 2 + colors, (n, k), generator=g)
    x.scatter_(1, pos, tokens)
    x[:, ctx:] = 1
    return x, tokens


@pytest.mark.slow
def test_mamba_learns_selective_copying() -> None:
    ctx, k, colors = 16, 4, 4
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    lm = create_model("mamba_lm", d_model=32, n_layer=2, vocab_size=2 + colors)
    opt = torch.optim.AdamW(lm.parameters(), lr=5e-3, weight_decay=0.0)
    for _ in range(250):
        x, y = _selective_copying(g, 32, ctx, k, colors)
        logits = lm(x)[:, -k - 1:-1]  # the prediction made at the last noise token and at each marker
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = _selective_copying(torch.Generator().manual_seed(1), 500, ctx, k, colors)
    with torch.no_grad():
        acc = (lm.eval()(x)[:, -k - 1:-1].argmax(-1) == y).float().mean().item()
    assert acc >= 0.9, f"selective copying accuracy {acc:.3f} (chance {1 / colors:.2f})"
