"""CBNet: BranchyNet's early exit and branchy forward are consistent, and the converter + light classifier pipeline
classifies digits within 2 points of the full network."""

from __future__ import annotations

import pytest
import torch

from archlab.data import load_dataset
from archlab.dynamic.cbnet import (
    BranchyNet,
    CBNet,
    ConvertingAutoencoder,
    easy_mask,
    entropy,
    finetune_classifier,
    train_branchy,
    train_converter,
)
from archlab.errors import UserError


def test_the_branchy_forward_takes_the_early_exit_exactly_where_it_is_confident():
    torch.manual_seed(0)
    net = BranchyNet(1, 10).eval()
    x = torch.randn(16, 1, 8, 8)
    early, final = net.forward_both(x)
    threshold = entropy(early).median().item()
    out, exited = net.forward_branchy(x, threshold)
    assert 0 < int(exited.sum()) < 16
    assert torch.allclose(out[exited], early[exited], atol=1e-6)
    assert torch.allclose(out[~exited], final[~exited], atol=1e-5)
    assert ConvertingAutoencoder(1)(torch.randn(2, 1, 7, 9)).shape == (2, 1, 7, 9)


def test_the_converter_makes_hard_images_easy_and_the_pipeline_keeps_accuracy():
    data = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    net = BranchyNet(1, 10)
    train_branchy(net, data.x_train, data.y_train, epochs=20)
    with torch.no_grad():
        threshold = entropy(net.forward_early(data.x_train)).median().item()  # about half the images easy
    easy = easy_mask(net, data.x_train, data.y_train, threshold)
    assert 0.2 < easy.float().mean() < 1.0
    ae = ConvertingAutoencoder(1, width=32)
    train_converter(ae, data.x_train, data.y_train, easy, epochs=60)
    cb = CBNet(ae, net)
    finetune_classifier(cb, data.x_train, data.y_train, epochs=5)
    with torch.no_grad():
        full = (net(data.x_test).argmax(1) == data.y_test).float().mean().item()
        pipeline = (cb(data.x_test).argmax(1) == data.y_test).float().mean().item()
    assert pipeline >= full - 0.02, (pipeline, full)
    with pytest.raises(UserError, match="no easy training image"):
        train_converter(ae, data.x_train, data.y_train, torch.zeros_like(easy), epochs=1)
