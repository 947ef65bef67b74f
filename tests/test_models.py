import numpy as np
import pytest
import torch

from mnist_codec.codecs import models, pca
from mnist_codec.errors import DataError
from mnist_codec.params import ACTIVATIONS


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(
    "arch",
    [
        {"kind": "deep", "hidden": [256, 64]},
        {"kind": "deep", "hidden": [1000, 500, 250]},
        {"kind": "conv", "channels": [32, 64]},
        {"kind": "conv", "channels": [4]},
        {"kind": "conv", "channels": [2, 4, 8]},
        {"kind": "conv", "channels": [2, 2, 4, 4]},
    ],
)
def test_deep_and_conv_autoencoder_shapes_for_every_activation(arch, activation):
    model = models.build({**arch, "latent_dim": 16, "activation": activation})
    x = torch.rand(5, 784)
    assert model.encode(x).shape == (5, 16)
    out = model(x)
    assert out.shape == (5, 784) and out.min() >= 0 and out.max() <= 1  # Sigmoid out


def test_architectures_match_the_notebook():
    deep = models.deep_autoencoder(32, (256, 64), "relu")
    linear = [m for m in deep.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (784, 256),
        (256, 64),
        (64, 32),
        (32, 64),
        (64, 256),
        (256, 784),
    ]
    assert isinstance(deep.encoder[-1], torch.nn.ReLU)  # activation after the bottleneck too
    assert isinstance(deep.decoder[-1], torch.nn.Sigmoid)
    ae = models.shallow_autoencoder(32)
    assert models.count_parameters(ae) == 784 * 32 + 32 + 32 * 784 + 784
    assert isinstance(ae.encoder[1], torch.nn.ReLU) and isinstance(ae.decoder[1], torch.nn.Sigmoid)


def test_conv_architecture():
    model = models.conv_autoencoder(32, (32, 64), "relu")
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [(1, 32, (2, 2)), (32, 64, (2, 2))]
    deconvs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in deconvs] == [(64, 32), (32, 1)]
    assert isinstance(model.encoder[-1], torch.nn.Linear)  # the code is linear: no activation after it
    assert model.encoder[-1].in_features == 64 * 7 * 7
    assert isinstance(model.decoder[-2], torch.nn.Sigmoid)
    # the stored numbers: 2 convs, the linear maps to and from the code, 2 transposed convs
    assert models.count_parameters(model) == (1 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (3136 * 32 + 32) + (
        32 * 3136 + 3136
    ) + (64 * 32 * 9 + 32) + (32 * 1 * 9 + 1)
    assert models.conv_sides(4) == [28, 14, 7, 4, 2]


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "deep", "latent_dim": 8, "hidden": [32], "activation": "tanh"},
        {"kind": "conv", "latent_dim": 8, "channels": [4, 8], "activation": "elu"},
    ],
)
def test_save_and_load_round_trip(tmp_path, spec):
    model = models.build(spec)
    models.save(model, spec, tmp_path / "m.pt")
    loaded, got_spec = models.load(tmp_path / "m.pt")
    assert got_spec == spec
    x = torch.rand(3, 784)
    assert torch.equal(model(x), loaded(x))


def test_load_names_missing_and_mismatched_files(tmp_path):
    with pytest.raises(DataError, match="model file not found"):
        models.load(tmp_path / "none.pt")
    spec = {"kind": "ae", "latent_dim": 8}
    models.save(models.build(spec), {"kind": "ae", "latent_dim": 16}, tmp_path / "m.pt")
    with pytest.raises(DataError, match="weights do not match spec"):
        models.load(tmp_path / "m.pt")


def test_pca_codec_matches_scikit_learn_and_round_trips(tmp_path, digits):
    from sklearn.decomposition import PCA

    x, _ = digits
    arrays = pca.fit(x, 16)
    pca.save(arrays, tmp_path / "pca.npz")
    codec = pca.load(tmp_path / "pca.npz")
    ref = PCA(n_components=16, svd_solver="full").fit(x)
    ours = codec(torch.from_numpy(x)).numpy()
    theirs = ref.inverse_transform(ref.transform(x))
    assert np.mean((x - ours) ** 2) == pytest.approx(np.mean((x - theirs) ** 2), rel=1e-5, abs=1e-7)
    assert codec.encode(torch.from_numpy(x)).shape == (400, 16)
    with np.load(tmp_path / "pca.npz", allow_pickle=False) as npz:  # stored without pickle
        assert set(npz.files) == {"mean", "components", "explained_variance_ratio"}


def test_pca_rejects_bad_files(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid PCA file"):
        pca.load(tmp_path / "x.npz")


def test_covariance_eigh_pca_equals_full_svd_on_real_mnist_to_1e_6():
    # the solver the pipeline uses, against the exact full SVD, on the 10,000 real test digits
    from sklearn.decomposition import PCA

    from mnist_codec.codecs import models, pca
    from mnist_codec.data import idx, mnist

    images, _ = idx.load_pair(mnist.bundled_dir(), "t10k")
    x = images.astype(np.float32) / 255.0
    arrays = pca.fit(x, 32)
    codec = models.pca_codec_from_arrays(arrays["mean"], arrays["components"])
    ours = float(np.mean((codec(torch.from_numpy(x)).numpy().astype(np.float64) - x) ** 2))
    full = PCA(n_components=32, svd_solver="full").fit(x.astype(np.float64))
    exact = float(np.mean((full.inverse_transform(full.transform(x.astype(np.float64))) - x) ** 2))
    assert abs(ours - exact) <= 1e-6
