"""Gated Linear Attention: recurrent, chunked and parallel forms agree; state carries across calls and decodes
step by step; the layer is causal, built as fla's ``GatedLinearAttention`` and computes the published recurrence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.errors import UserError
from archlab.zoo import create_mixer, get_mixer_spec
from archlab.zoo.mixers.gla import GatedLinearAttention, chunk_gla, recurrent_gla


def _gla(dim: int = 32, dtype=torch.float64, gate_bias: float = 0.0, **kw) -> GatedLinearAttention:
    """A GLA layer with random (not initial) weights: larger queries/keys and gate biases spread so that some
    channels forget within a few tokens and others remember for hundreds."""
    torch.manual_seed(0)
    layer = create_mixer("gla", dim, **kw).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, p.shape[-1] ** -0.5)
        layer.gk_proj[1].bias.normal_(gate_bias, 3.0)
        layer.g_norm_swish_gate.weight.uniform_(0.5, 1.5)
    return layer


def test_registered_as_causal_sequence_mixer() -> None:
    spec = get_mixer_spec("gla")
    assert spec.layout == "sequence" and spec.causal and "Gated Linear Attention" in spec.paper


def test_structure_and_names_follow_fla_layer() -> None:
    layer = create_mixer("gla", 64, num_heads=2)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    # fla GatedLinearAttention(hidden_size=64, num_heads=2): expand_k 0.5, expand_v 1, low-rank gate 16
    assert shapes == {
        "q_proj.weight": (32, 64), "k_proj.weight": (32, 64), "v_proj.weight": (64, 64),
        "g_proj.weight": (64, 64), "gk_proj.0.weight": (16, 64), "gk_proj.1.weight": (32, 16),
        "gk_proj.1.bias": (32,), "o_proj.weight": (64, 64), "g_norm_swish_gate.weight": (32,),
    }
    assert (layer.head_k_dim, layer.head_v_dim, layer.scale) == (16, 32, 16 ** -0.5)
    assert layer.gate_logit_normalizer == 16 and layer.mode == "chunk" and layer.chunk_size == 64


@pytest.mark.parametrize("dim, heads", [(16, 1), (24, 1), (32, 1), (48, 1), (64, 2), (96, 3), (128, 4), (256, 4)])
def test_default_head_count(dim: int, heads: int) -> None:
    layer = create_mixer("gla", dim)
    assert layer.num_heads == heads
    assert layer.key_dim % heads == 0 and layer.value_dim % heads == 0


def test_short_convolutions_follow_fla_layer() -> None:
    layer = create_mixer("gla", 64, num_heads=2, use_short_conv=True)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items() if "conv1d" in k}
    # fla's ShortConvolution(hidden_size, kernel_size=4, bias=False): a depthwise Conv1d per projection
    assert shapes == {"q_conv1d.weight": (32, 1, 4), "k_conv1d.weight": (32, 1, 4), "v_conv1d.weight": (64, 1, 4)}
    with pytest.raises(UserError, match="conv_size must be >= 1"):
        create_mixer("gla", 64, use_short_conv=True, conv_size=0)


@pytest.mark.parametrize("short_conv", [False, True])
def test_layer_matches_spelled_out_recurrence(short_conv: bool) -> None:
    # An independent spelling of the published layer from its weights, token by token and head by head:
    # alpha = sigmoid(x W1 W2 + b)^(1/16), S = diag(alpha) S + k^T v, o = (q / sqrt(d_k)) S,
    # out = W_o (RMSNorm(o) * w * swish(x W_g)); with short convolutions q, k and v first pass through
    # silu(causal depthwise conv), here torch's own conv1d padded on both sides and cut to the first L outputs.
    layer = _gla(32, num_heads=2, use_short_conv=short_conv)
    x = torch.randn(2, 9, 32, dtype=torch.float64)
    heads, dk, dv = 2, 8, 16
    q = x @ layer.q_proj.weight.T
    k = x @ layer.k_proj.weight.T
    v = x @ layer.v_proj.weight.T
    if short_conv:
        def conv(t: torch.Tensor, c: torch.nn.Conv1d) -> torch.Tensor:
            return F.silu(F.conv1d(t.transpose(1, 2), c.weight, padding=3, groups=t.shape[-1])[..., :9]
                          ).transpose(1, 2)

        q, k, v = conv(q, layer.q_conv1d), conv(k, layer.k_conv1d), conv(v, layer.v_conv1d)
    alpha = torch.sigmoid(layer.gk_proj[1](x @ layer.gk_proj[0].weight.T)) ** (1 / 16)
    g = x @ layer.g_proj.weight.T
    out = torch.zeros(2, 9, 32, dtype=torch.float64)
    for b in range(2):
        states = [torch.zeros(dk, dv, dtype=torch.float64) for _ in range(heads)]
        for t in range(9):
            o_heads = []
            for h in range(heads):
                ks, vs = slice(h * dk, (h + 1) * dk), slice(h * dv, (h + 1) * dv)
                states[h] = alpha[b, t, ks, None] * states[h] + torch.outer(k[b, t, ks], v[b, t, vs])
                o = (q[b, t, ks] / dk ** 0.5) @ states[h]
                o = o / torch.sqrt(o.pow(2).mean() + 1e-5) * layer.g_norm_swish_gate.weight
                o_heads.append(o * F.silu(g[b, t, vs]))
            out[b, t] = torch.cat(o_heads) @ layer.o_proj.weight.T
    for mode in ("recurrent", "chunk", "parallel"):
        torch.testing.assert_close(layer(x, mode=mode), out, atol=1e-10, rtol=0)


@pytest.mark.parametrize("length", [1, 15, 16, 17, 64, 100, 150])
def test_forms_agree_in_float64(length: int) -> None:
    layer = _gla(48)
    x = torch.randn(2, length, 48, dtype=torch.float64)
    reference, ref_state = layer(x, mode="recurrent", return_state=True)
    for chunk in (16, 64):
        layer.chunk_size = chunk
        out, state = layer(x, mode="chunk", return_state=True)
        torch.testing.assert_close(out, reference, atol=1e-10, rtol=0)
        torch.testing.assert_close(state, ref_state, atol=1e-10, rtol=0)
    out, state = layer(x, mode="parallel", return_state=True)
    torch.testing.assert_close(out, reference, atol=1e-10, rtol=0)
    torch.testing.assert_close(state, ref_state, atol=1e-10, rtol=0)


def test_forms_agree_in_float32_with_gradients() -> None:
    layer = _gla(32, dtype=torch.float32)
    x = torch.randn(2, 90, 32)
    results = {}
    for mode, chunk in (("recurrent", 64), ("chunk", 16), ("chunk", 64), ("parallel", 64)):
        layer.chunk_size = chunk
        xi = x.clone().requires_grad_(True)
        layer.zero_grad()
        out = layer(xi, mode=mode)
        out.pow(2).sum().backward()
        results[(mode, chunk)] = (out, xi.grad, layer.gk_proj[1].weight.grad.clone())
    reference = results[("recurrent", 64)]
    for key, got in results.items():
        for a, b in zip(got, reference, strict=True):
            assert torch.isfinite(a).all(), key
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_chunked_form_is_stable_under_strong_forgetting() -> None:
    # log-decays of -50 per token: any form that multiplies exp(+cumulative) by exp(-cumulative) overflows
    torch.manual_seed(0)
    q, k = torch.randn(1, 2, 130, 8), torch.randn(1, 2, 130, 8)
    v = torch.randn(1, 2, 130, 8)
    gk = torch.full((1, 2, 130, 8), -50.0)
    gk[..., ::2] = -0.01  # half the channels still remember
    o_ref, s_ref = recurrent_gla(q, k, v, gk, 0.5)
    o, s = chunk_gla(q, k, v, gk, 0.5, chunk_size=64, sub_chunk_size=16)
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, o_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s, s_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("short_conv", [False, True])
@pytest.mark.parametrize("mode", ["chunk", "parallel", "recurrent"])
def test_two_halves_with_carried_state_equal_one_call(mode: str, short_conv: bool) -> None:
    layer = _gla(32, chunk_size=16, use_short_conv=short_conv)
    x = torch.randn(2, 53, 32, dtype=torch.float64)
    full, full_state = layer(x, mode=mode, return_state=True)
    # pieces of 21, 2 and 30 tokens: the middle one is shorter than the convolution's 4 taps
    outs, state = [], None
    for piece in (x[:, :21], x[:, 21:23], x[:, 23:]):
        out, state = layer(piece, state, mode=mode, return_state=True)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, atol=1e-10, rtol=0)
    torch.testing.assert_close(state, full_state, atol=1e-10, rtol=0)


def test_short_conv_state_is_checked() -> None:
    layer = _gla(32, use_short_conv=True)
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    _, state = layer(x, return_state=True)
    with pytest.raises(UserError, match="continues from a GLAState"):
        layer(x, state.recurrent_state)
    with pytest.raises(UserError, match="expected a conv state"):
        layer(x[:1], state._replace(recurrent_state=state.recurrent_state[:1]))


@pytest.mark.parametrize("short_conv", [False, True])
def test_step_decoding_equals_full_forward(short_conv: bool) -> None:
    layer = _gla(32, use_short_conv=short_conv)
    x = torch.randn(3, 40, 32, dtype=torch.float64)
    full = layer(x)
    prefix, state = layer(x[:, :25], return_state=True)
    steps = [prefix]
    for t in range(25, 40):
        y, state = layer.step(x[:, t], state)
        steps.append(y[:, None])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=0)


@pytest.mark.parametrize("short_conv", [False, True])
@pytest.mark.parametrize("mode", ["chunk", "parallel"])
def test_causal_and_remembers(mode: str, short_conv: bool) -> None:
    layer = _gla(32, chunk_size=16, gate_bias=4.0, use_short_conv=short_conv)
    x = torch.randn(1, 70, 32, dtype=torch.float64)
    y = x.clone()
    y[0, 30] += 1.0
    delta = (layer(y, mode=mode) - layer(x, mode=mode)).abs().amax(-1)[0]
    assert torch.all(delta[:30] == 0)
    assert torch.all(delta[30:] > 1e-8)  # a change reaches every later token through the state


def test_onnx_export_of_chunked_form_matches(tmp_path) -> None:
    # 150 tokens: three chunks, the last one padded; the batch axis stays dynamic (traced at batch 1)
    from archlab.export import check_onnx, export_onnx

    layer = _gla(32, dtype=torch.float32).eval()
    path = export_onnx(layer, (150, 32), tmp_path / "gla.onnx")
    assert check_onnx(layer, path, (150, 32), batch_sizes=(1, 3)) <= 1e-4


def test_bad_configuration_and_input() -> None:
    with pytest.raises(UserError, match="gla: .*divisible by num_heads 3"):
        create_mixer("gla", 32, num_heads=3)
    with pytest.raises(UserError, match="gla: unknown mode"):
        create_mixer("gla", 32, mode="fused")
    with pytest.raises(UserError, match="chunk_size"):
        create_mixer("gla", 32, chunk_size=24)
    layer = create_mixer("gla", 32)
    with pytest.raises(UserError, match=r"gla: expected input \(B, L, 32\), got \(2, 5, 16\)"):
        layer(torch.randn(2, 5, 16))
    with pytest.raises(UserError, match="gla: step"):
        layer.step(torch.randn(2, 1, 32))


# --- learning: associative recall ------------------------------------------------------------------------

def _recall_batch(n: int, gen: torch.Generator, pairs: int, n_keys: int, n_values: int):
    """``k1 v1 k2 v2 ... kP vP q`` with distinct keys; the target is the value that followed key ``q``."""
    keys = torch.stack([torch.randperm(n_keys, generator=gen)[:pairs] for _ in range(n)])
    values = torch.randint(n_values, (n, pairs), generator=gen)
    which = torch.randint(pairs, (n,), generator=gen)
    rows = torch.arange(n)
    tokens = torch.cat([torch.stack([keys, values + n_keys], dim=-1).reshape(n, 2 * pairs),
                        keys[rows, which, None]], dim=1)
    return tokens, values[rows, which]


class _RecallNet(torch.nn.Module):
    def __init__(self, vocab: int, n_values: int, dim: int, layers: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(dim) for _ in range(layers))
        self.mixers = torch.nn.ModuleList(create_mixer("gla", dim) for _ in range(layers))
        self.head = torch.nn.Linear(dim, n_values)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.emb(tokens)
        for norm, mixer in zip(self.norms, self.mixers, strict=True):
            h = h + mixer(norm(h))
        return self.head(h[:, -1])


def _train_recall(pairs: int = 4, n_keys: int = 8, n_values: int = 8, dim: int = 32, layers: int = 2,
                  steps: int = 600, batch: int = 64, lr: float = 3e-3, seed: int = 0,
                  log_every: int = 0) -> float:
    """Train a GLA stack on associative recall; returns accuracy on 1,000 held-out sequences."""
    torch.manual_seed(seed)
    net = _RecallNet(n_keys + n_values, n_values, dim, layers)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    x_test, y_test = _recall_batch(1000, torch.Generator().manual_seed(seed + 1000), pairs, n_keys, n_values)

    def accuracy() -> float:
        with torch.no_grad():
            return (net(x_test).argmax(-1) == y_test).float().mean().item()

    for step in range(steps):
        x, y = _recall_batch(batch, gen, pairs, n_keys, n_values)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log_every and step % log_every == 0:
            print(f"step {step} loss {loss.item():.3f} acc {accuracy():.3f}", flush=True)
    return accuracy()


@pytest.mark.slow
def test_learns_associative_recall(one_thread: None) -> None:
    # 4 key-value pairs over 8 keys and 8 values, then a query key: chance is 1/8, and picking any value seen
    # in the sequence without binding it to its key plateaus near 40 %. Two GLA layers (d = 32, chunked form)
    # reach 100 % held-out accuracy by step 1,000 (about 30 s of one CPU core for 1,200 steps).
    accuracy = _train_recall(pairs=4, n_keys=8, n_values=8, dim=32, layers=2, steps=1200)
    assert accuracy >= 0.9, f"associative recall: {accuracy:.3f} held-out accuracy"
