"""Discrete Mamba-2 / SSD (Phi-Mamba, MOHAWK): the materialised mixer matrix, the chunked SSD algorithm and the
sequential recurrence agree; state carrying and step() decoding equal one long call; the mixer is causal;
names and shapes follow goombalab/phi-mamba ``discrete_mamba2.py``; bad input is a UserError."""

from __future__ import annotations

import pytest
import torch

from archlab.errors import UserError
from archlab.zoo import create_mixer, get_mixer_spec, list_mixers
from archlab.zoo.mixers.ssd import DiscreteMamba2, materialize_mixer, segsum, ssd_chunked, ssd_sequential

pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny ops: a second thread only waits


def _inputs(batch: int, length: int, heads: int, headdim: int, d_state: int, dtype=torch.float64, seed: int = 0,
            decay_scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, heads, headdim, generator=g, dtype=dtype)
    log_a = -torch.rand(batch, length, heads, generator=g, dtype=dtype) * decay_scale
    B = torch.randn(batch, length, heads, d_state, generator=g, dtype=dtype)
    C = torch.randn(batch, length, heads, d_state, generator=g, dtype=dtype)
    return x, log_a, B, C


def test_segsum_is_the_sum_between_positions() -> None:
    a = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=torch.float64)
    s = segsum(a)
    for i in range(4):
        for j in range(4):
            expected = a[j + 1:i + 1].sum() if j <= i else -torch.inf
            assert s[i, j] == expected, (i, j)


@pytest.mark.parametrize("length", [1, 5, 16, 23, 64])
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 128])
def test_mixer_matrix_chunked_ssd_and_recurrence_agree_float64(length: int, chunk_size: int) -> None:
    x, log_a, B, C = _inputs(2, length, 3, 4, 5, seed=length)
    D = torch.randn(3, dtype=torch.float64)
    y_seq, h_seq = ssd_sequential(x, log_a, B, C)
    y_chunk, h_chunk = ssd_chunked(x, log_a, B, C, chunk_size)
    M = materialize_mixer(log_a, B, C, D)
    assert M.shape == (2, 3, length, length)
    y_matrix = (M @ x.transpose(1, 2)).transpose(1, 2)  # M @ x per head
    y_seq_d = y_seq + D[:, None] * x
    torch.testing.assert_close(y_matrix, y_seq_d, rtol=0, atol=1e-10)
    torch.testing.assert_close(y_chunk + D[:, None] * x, y_matrix, rtol=0, atol=1e-10)
    torch.testing.assert_close(h_chunk, h_seq, rtol=0, atol=1e-10)
    # M is lower-triangular: the mixer is causal
    assert torch.all(M.triu(1) == 0)


def test_float32_and_initial_state_and_strong_decay() -> None:
    x, log_a, B, C = _inputs(1, 300, 2, 8, 16, dtype=torch.float32, decay_scale=50.0)
    h0 = torch.randn(1, 2, 8, 16)
    y_seq, h_seq = ssd_sequential(x.double(), log_a.double(), B.double(), C.double(), h0.double())
    y_chunk, h_chunk = ssd_chunked(x, log_a, B, C, 64, h0)
    assert torch.isfinite(y_chunk).all()  # decays down to exp(-50 * 64) within a chunk: nothing overflows
    torch.testing.assert_close(y_chunk.double(), y_seq, rtol=0, atol=1e-4)
    torch.testing.assert_close(h_chunk.double(), h_seq, rtol=0, atol=1e-4)


def _mixer(**kw) -> DiscreteMamba2:
    torch.manual_seed(0)
    m = DiscreteMamba2(32, d_state=8, n_qk_heads=2, n_v_heads=4, chunk_size=6, **kw).double()
    with torch.no_grad():
        m.D.normal_()
        m.z_bias.normal_()
    return m


def test_module_forms_agree_and_mixer_matrix_reproduces_the_scan() -> None:
    m = _mixer()
    u = torch.randn(2, 19, 32, dtype=torch.float64)
    y = m(u)
    m.scan = "sequential"
    torch.testing.assert_close(m(u), y, rtol=0, atol=1e-10)
    # the materialised matrix applied to the layer's own x, then gate and out_proj, is the layer's output
    x, _, _, z, _, _ = m._project(u, None)
    M = m.mixer_matrix(u)
    mixed = (M @ x.transpose(1, 2)).transpose(1, 2).flatten(-2)
    torch.testing.assert_close(m.out_proj(mixed * torch.nn.functional.silu(z + m.z_bias)), y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation", ["identity", "silu"])
def test_state_carrying_and_step_decoding_equal_one_long_call(activation: str) -> None:
    m = _mixer(activation=activation)
    u = torch.randn(2, 19, 32, dtype=torch.float64)
    full, full_state = m(u, return_state=True)
    y1, s = m(u[:, :2], return_state=True)
    y2, s = m(u[:, 2:13], s, return_state=True)
    y3, s = m(u[:, 13:], s, return_state=True)
    torch.testing.assert_close(torch.cat([y1, y2, y3], dim=1), full, rtol=0, atol=1e-10)
    torch.testing.assert_close(s.ssm, full_state.ssm, rtol=0, atol=1e-10)
    state = m.allocate_inference_cache(2, dtype=torch.float64)
    for t in range(19):
        out, state = m.step(u[:, t:t + 1], state)
        torch.testing.assert_close(out[:, 0], full[:, t], rtol=0, atol=1e-10)
        assert state.ssm.shape == (2, 4, 8, 8) and state.conv.shape == (2, 32 + 2 * 2 * 8, 4)


def test_causality_by_perturbation() -> None:
    m = _mixer()
    u = torch.randn(1, 20, 32, dtype=torch.float64)
    u2 = u.clone()
    u2[:, 12:] += 1.0
    y, y2 = m(u), m(u2)
    torch.testing.assert_close(y2[:, :12], y[:, :12], rtol=0, atol=0)
    assert (y2[:, 12:] - y[:, 12:]).abs().amax(-1).min() > 0


# Expected key -> shape from goombalab/phi-mamba modules/mixers/discrete_mamba2.py for the Phi-Mamba layer
# (assets/sample_config.json): d_model 2048, d_state 64, n_qk_heads = n_v_heads = 32, expand 1, d_conv 4,
# bias False, conv_bias True. in_proj: 2 * 2048 + 2 * 32 * 64 + 32 = 8224; conv_dim = 2048 + 2 * 32 * 64 = 6144.
REFERENCE_PHI_MAMBA_LAYER = {
    "in_proj.weight": (8224, 2048),
    "z_bias": (2048,),
    "conv1d.weight": (6144, 1, 4),
    "conv1d.bias": (6144,),
    "D": (32,),
    "out_proj.weight": (2048, 2048),
}


def test_parameter_names_and_shapes_equal_the_reference() -> None:
    with torch.device("meta"):
        m = DiscreteMamba2(2048)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == REFERENCE_PHI_MAMBA_LAYER
    small = DiscreteMamba2(16, d_state=4, n_qk_heads=2, n_v_heads=4)
    assert torch.equal(small.D.data, torch.ones(4)) and torch.equal(small.z_bias.data, torch.zeros(16))
    small.load_state_dict({k: torch.randn(v.shape) for k, v in small.state_dict().items()}, strict=True)


def test_registered_as_a_causal_sequence_mixer_for_every_width() -> None:
    spec = get_mixer_spec("ssd")
    assert spec.layout == "sequence" and spec.causal and "Duality" in spec.paper
    assert "ssd" in list_mixers(causal=True) and "ssd" not in list_mixers(causal=False)
    for width in (16, 24, 32, 48, 64, 96, 128):
        mixer = create_mixer("ssd", width)
        assert mixer.d_inner % mixer.n_v_heads == 0
        x = torch.randn(2, 49, width)
        assert mixer(x).shape == x.shape


def test_bad_configuration_and_input_raise_user_errors() -> None:
    with pytest.raises(UserError, match="ssd: d_inner 30 must be divisible by n_v_heads 4"):
        DiscreteMamba2(30, n_qk_heads=4, n_v_heads=4)
    with pytest.raises(UserError, match="n_qk_heads"):
        DiscreteMamba2(32, n_qk_heads=3, n_v_heads=4)
    with pytest.raises(UserError, match="activation"):
        DiscreteMamba2(32, n_qk_heads=1, n_v_heads=1, activation="gelu")
    m = DiscreteMamba2(16, d_state=4, n_qk_heads=1, n_v_heads=1)
    with pytest.raises(UserError, match=r"ssd: expected input \(B, L, d_model\) with d_model=16"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(UserError, match="expected a state"):
        m(torch.randn(2, 5, 16), m.allocate_inference_cache(1))
    x, log_a, B, C = _inputs(1, 5, 2, 3, 4)
    with pytest.raises(UserError, match="ssd: expected log_a"):
        ssd_chunked(x, log_a[:, :4], B, C)
