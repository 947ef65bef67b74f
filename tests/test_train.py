import numpy as np
import pytest
import torch

from mnist_codec import models, train
from mnist_codec.errors import TrainingError
from mnist_codec.seeding import derive_seed, seed_everything


def _fit(x, name="m", epochs=2, seed=0, batch_size=32, lr=1e-3, spec=None):
    spec = spec or {"kind": "deep", "latent_dim": 8, "hidden": [64, 16], "activation": "leaky_relu"}
    generator = seed_everything(derive_seed(seed, name))
    model = models.build(spec)
    xt = torch.from_numpy(x)
    history = train.fit(model, xt, xt[:100], name=name, epochs=epochs, batch_size=batch_size, lr=lr,
                        generator=generator)
    return model, history


def test_a_few_epochs_lower_the_loss(digits):
    x, _ = digits
    model, history = _fit(x, epochs=4, lr=3e-3)
    assert [r.epoch for r in history] == [1, 2, 3, 4]
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].eval_loss < history[0].eval_loss
    assert history[-1].eval_loss == pytest.approx(train.reconstruction_mse(model, torch.from_numpy(x[:100])))


def test_same_seed_same_numbers(digits):
    x, _ = digits
    m1, h1 = _fit(x, seed=7)
    m2, h2 = _fit(x, seed=7)
    assert [r.train_loss for r in h1] == [r.train_loss for r in h2]
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    _, h3 = _fit(x, seed=8)
    assert h3[-1].train_loss != h1[-1].train_loss


def test_a_models_result_does_not_depend_on_models_trained_before_it(digits):
    x, _ = digits
    _, alone = _fit(x, name="deep_tanh")
    _fit(x, name="deep_relu")  # something else trained first, in the same process
    _, after = _fit(x, name="deep_tanh")
    assert [r.train_loss for r in alone] == [r.train_loss for r in after]
    assert derive_seed(42, "deep_tanh") != derive_seed(42, "deep_relu")


def test_last_partial_batch_is_trained_on(digits):
    # 400 images at batch 128: 3 full batches and one of 16. Every image counts in the epoch loss:
    # with lr=0 the epoch loss equals the untrained model's MSE over all 400 images.
    x, _ = digits
    generator = seed_everything(1)
    model = models.build({"kind": "ae", "latent_dim": 4})
    before = train.reconstruction_mse(model, torch.from_numpy(x))
    xt = torch.from_numpy(x)
    hist = train.fit(model, xt, xt, name="ae", epochs=1, batch_size=128, lr=1e-30, generator=generator)
    assert hist[0].train_loss == pytest.approx(before, rel=1e-5)


def test_non_finite_loss_names_model_and_epoch(digits):
    x, _ = digits
    model = models.build({"kind": "ae", "latent_dim": 4})
    with torch.no_grad():
        model.encoder[0].weight[0, 0] = float("nan")
    xt = torch.from_numpy(x)
    with pytest.raises(TrainingError, match="ae: training loss became nan in epoch 1"):
        train.fit(model, xt, xt, name="ae", epochs=3, batch_size=64, lr=1e-3, generator=seed_everything(0))


def test_reconstruction_mse_is_chunk_independent(digits):
    x, _ = digits
    model = models.build({"kind": "ae", "latent_dim": 4})
    xt = torch.from_numpy(x)
    assert train.reconstruction_mse(model, xt, chunk=7) == pytest.approx(train.reconstruction_mse(model, xt), rel=1e-9)
    ref = float(np.mean((model(xt).detach().numpy().astype(np.float64) - x) ** 2))
    assert train.reconstruction_mse(model, xt) == pytest.approx(ref, rel=1e-6)
