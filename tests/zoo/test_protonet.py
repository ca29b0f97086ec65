"""The prototype network: shapes, the four loss terms against a NumPy computation, and on digits >= 97 % test
accuracy with every prototype decoding from near a training latent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.data import load_dataset
from archlab.errors import UserError
from archlab.zoo.models.protonet import PrototypeNet, protonet_mnist, prototype_loss, train_protonet


def test_the_reference_network_has_a_40_d_latent_and_decodes_to_the_input_size():
    model = protonet_mnist()
    out = model.forward_all(torch.rand(3, 1, 28, 28))
    assert model.latent_dim == 40 and out.latent.shape == (3, 40)
    assert out.reconstruction.shape == (3, 1, 28, 28) and out.distances.shape == (3, 15)
    assert model.decode_prototypes().shape == (15, 1, 28, 28)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    odd = PrototypeNet(img_size=(9, 13), num_prototypes=4)
    assert odd.forward_all(torch.rand(2, 1, 9, 13)).reconstruction.shape == (2, 1, 9, 13)
    with pytest.raises(UserError, match=r"expected images \(B, 1, 28, 28\)"):
        model(torch.rand(2, 3, 28, 28))


def test_the_four_loss_terms_match_numpy():
    torch.manual_seed(0)
    model = PrototypeNet(img_size=8, num_prototypes=5)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    out = model.forward_all(x)
    total, terms = prototype_loss(model, out, x, y, (20.0, 1.0, 1.0, 1.0))
    z = out.latent.detach().double().numpy()
    p = model.prototype_feature_vectors.detach().double().numpy()
    d = ((z[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    logits = d @ model.last_layer.detach().double().numpy()
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    ce = -logp[np.arange(6), y.numpy()].mean()
    ae = ((out.reconstruction.detach().double().numpy() - x.double().numpy()) ** 2).reshape(6, -1).sum(1).mean()
    r1, r2 = d.min(0).mean(), d.min(1).mean()
    assert terms["class"] == pytest.approx(ce, rel=1e-5)
    assert terms["ae"] == pytest.approx(ae, rel=1e-5)
    assert terms["r1"] == pytest.approx(r1, rel=1e-5) and terms["r2"] == pytest.approx(r2, rel=1e-5)
    assert total.item() == pytest.approx(20 * ce + ae + r1 + r2, rel=1e-5)


def test_on_digits_it_reaches_97_percent_and_every_prototype_sits_near_a_training_latent():
    data = load_dataset("digits", seed=0)
    lo, hi = data.x_train.min(), data.x_train.max()
    scale = lambda t: ((t - lo) / (hi - lo)).clamp(0, 1)  # noqa: E731 (the decoder's sigmoid range)
    x, xt = scale(data.x_train), scale(data.x_test)
    torch.manual_seed(0)
    model = PrototypeNet(img_size=8, num_classes=10, num_prototypes=15, channels=(32, 32, 10))
    train_protonet(model, x, data.y_train, epochs=600, batch_size=250, lr=2e-3)
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == data.y_test).float().mean().item()
        z = model.encode(x)
        p = model.prototype_feature_vectors
        to_data = torch.cdist(p, z).min(1).values  # each prototype's nearest training latent
        nn_dist = torch.cdist(z, z).fill_diagonal_(float("inf")).min(1).values  # spacing of the data's latents
    assert acc >= 0.97, acc
    # every prototype lies within the data's own spacing (no farther from a training latent than the most isolated
    # training latent is from its nearest neighbour), and the typical one closer than a typical neighbour
    assert to_data.max() <= nn_dist.max(), (to_data, nn_dist.max())
    assert to_data.median() <= nn_dist.median(), (to_data, nn_dist.median())
