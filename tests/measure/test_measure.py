"""Cost measurements: exact parameter and FLOP counts on layers with known formulas, sane latency."""

from __future__ import annotations

from torch import nn

from archlab.measure import count_flops, count_params, measure_latency, profile_model


def test_params_and_flops_of_known_layers():
    lin = nn.Linear(10, 20)
    assert count_params(lin) == 10 * 20 + 20
    assert count_flops(lin, (10,)) == 2 * 10 * 20
    assert count_flops(lin, (10,), batch_size=4) == 4 * 2 * 10 * 20
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_params(conv) == 8 * 3 * 9
    assert count_flops(conv, (3, 16, 16)) == 2 * 8 * 3 * 9 * 16 * 16


def test_trainable_only_and_eval_mode_restored():
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    m[0].weight.requires_grad_(False)
    assert count_params(m, trainable_only=True) == count_params(m) - 16
    m.train()
    count_flops(m, (4,), batch_size=2)
    measure_latency(m, (4,), batch_size=2, repeats=3, warmup=1)
    assert m.training  # measuring does not leave the model in eval mode


def test_latency_grows_with_work():
    small, big = nn.Linear(64, 64), nn.Sequential(*[nn.Linear(512, 512) for _ in range(8)])
    t_small = measure_latency(small, (64,), repeats=15)
    t_big = measure_latency(big, (512,), repeats=15)
    assert 0 < t_small < t_big
    prof = profile_model(small, (64,), latency_batches=(1, 8), repeats=5)
    assert set(prof) == {"params", "flops", "latency_ms_b1", "latency_ms_b8"}


def test_peak_activation_bytes_follows_tensor_lifetimes():
    from torch import nn

    from archlab.measure import peak_activation_bytes

    # Linear(100->1000) output and the ReLU's output are alive together (the ReLU reads one, writes the other)
    model = nn.Sequential(nn.Linear(100, 1000), nn.ReLU(), nn.Linear(1000, 10))
    assert peak_activation_bytes(model, (100,), batch_size=4) == 2 * 4 * 1000 * 4
    # an in-place ReLU needs no second buffer: the peak is the hidden layer plus the output
    model = nn.Sequential(nn.Linear(100, 1000), nn.ReLU(inplace=True), nn.Linear(1000, 10))
    assert peak_activation_bytes(model, (100,), batch_size=4) == 4 * 1000 * 4 + 4 * 10 * 4


def test_flops_on_the_meta_device_equal_real_flops():
    import torch
    from torch import nn

    from archlab.measure import count_flops

    def make():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))

    with torch.device("meta"):
        meta = make()
    assert count_flops(meta, (3, 8, 8)) == count_flops(make(), (3, 8, 8)) == 2 * (8 * 6 * 6 * 27 + 288 * 5)


def test_attention_flops_are_counted_on_the_cpu_as_on_the_meta_device():
    """torch's flop counter has no formula for the CPU kernel of scaled_dot_product_attention: it counted 0 FLOPs
    for attention on a real model. QK^T and AV are 2 * 2 * B * H * S * S * D FLOPs, on either device."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from archlab.measure import count_flops

    class Attend(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = x.view(x.size(0), 4, x.size(1), 16)  # (B, H=4, S, D=16) from (B, S, 64)
            return F.scaled_dot_product_attention(q, q, q)

    expected = 2 * 2 * 1 * 4 * 32 * 32 * 16
    assert count_flops(Attend(), (32, 64)) == expected
    with torch.device("meta"):
        assert count_flops(Attend(), (32, 64)) == expected


def test_flops_of_a_model_that_views_its_parameters():
    # a learned-latent mixer (FIT) expands a parameter inside forward; counting must not trip over it
    from archlab.measure import count_flops
    from archlab.zoo.models.metaformer import MetaFormer

    model = MetaFormer.from_stages([{"mixer": "fit", "depth": 1, "width": 16}], in_chans=1, num_classes=10,
                                   image_size=8)
    assert count_flops(model, (1, 8, 8)) > 0
