"""A domain metric that works offline: a small CNN classifier trained on the training split.

Its penultimate-layer features replace Inception in clean-fid's machinery (Fréchet distance
and, optionally, KID between samples and reference images); its predictions give the class
histogram of the samples and the share of confident samples (max softmax >= 0.9).
Any labelled uint8 NHWC data works: two conv blocks of width 16 suit digits (MNIST, the
default); natural colour images (CIFAR-10) want more blocks and width
(``evaluate.classifier_blocks`` / ``classifier_width``) and horizontal flips in training
(``evaluate.classifier_flip``). The classifier's test accuracy says how much its feature
space knows of the domain, so it is reported beside the distance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_torch_file, nonfinite_entries
from ..io import InputFileError, atomic_open

from ihdm.metrics.fid import extract_features, feature_statistics, frechet_distance, kid_score

CONFIDENCE = 0.9


class ClassifierFileError(InputFileError):
    """A classifier file is damaged or not one written by :func:`save_classifier`."""


class DomainClassifier(nn.Module):
    """``blocks`` conv blocks (3×3 conv, ReLU, 2×2 max-pool; width doubling per block), an
    adaptive average pool to ``pool`` × ``pool``, a feature layer (penultimate) and a linear
    head; input float NCHW in [0, 1]. The defaults are the digit classifier (2 blocks of
    16 and 32 channels, pool 7)."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 16, feature_dim: int = 128,
                 blocks: int = 2, pool: int = 7) -> None:
        super().__init__()
        if blocks < 1 or pool < 1:
            raise ValueError(f"blocks and pool must be at least 1, got {blocks} and {pool}")
        self.hparams = {"in_channels": in_channels, "n_classes": n_classes, "width": width,
                        "feature_dim": feature_dim, "blocks": blocks, "pool": pool}
        layers: list[nn.Module] = []
        c_in = in_channels
        for b in range(blocks):
            c_out = width * 2**b
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(c_in * pool * pool, feature_dim), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(feature_dim, n_classes)

    @property
    def in_channels(self) -> int:
        return int(self.hparams["in_channels"])

    @property
    def n_classes(self) -> int:
        return int(self.hparams["n_classes"])

    def features(self, u: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, feature_dim)."""
        return self.body(u)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes)."""
        return self.head(self.body(u))


class ClassifierFeatures(nn.Module):
    """clean-fid feature extractor: (B, 3, H, W) float in [0, 255] -> classifier features.

    clean-fid's pipeline hands RGB batches; for a grayscale classifier the channels are averaged
    (they are equal copies for grayscale images).
    """

    def __init__(self, classifier: DomainClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x / 255.0
        if self.classifier.in_channels == 1 and u.shape[1] != 1:
            u = u.mean(dim=1, keepdim=True)
        return self.classifier.features(u)


def _to_unit_nchw(images: np.ndarray, what: str) -> torch.Tensor:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 images (N, H, W, C), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{what}: expected shape (N, H, W, C), got {images.shape}")
    return torch.tensor(images).permute(0, 3, 1, 2).float().div(255.0)


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    steps: int = 600,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 3e-3,
    device: str | torch.device = "cpu",
    width: int = 16,
    blocks: int = 2,
    pool: int = 7,
    feature_dim: int = 128,
    flip: bool = False,
) -> DomainClassifier:
    """Train a :class:`DomainClassifier` with Adam on uint8 NHWC ``images`` and integer ``labels``
    (``flip``: each training image mirrored left-right with probability 1/2, for natural
    images, not digits).

    Deterministic for a given seed on the CPU; returns the model in eval mode on the CPU.
    """
    u = _to_unit_nchw(images, "classifier training images")
    y = torch.as_tensor(np.asarray(labels)).long()
    if y.dim() != 1 or y.shape[0] != u.shape[0]:
        raise ValueError(f"labels must be a vector of {u.shape[0]} class indices, got shape {tuple(y.shape)}")
    if len(u) < 2 or int(y.min()) < 0:
        raise ValueError("the classifier needs at least 2 images and labels >= 0")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    n_classes = max(int(y.max()) + 1, 2)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = DomainClassifier(in_channels=u.shape[1], n_classes=n_classes, width=width,
                                 feature_dim=feature_dim, blocks=blocks, pool=pool).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps) if steps > 1 else None
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(u), (min(batch_size, len(u)),), generator=gen)
        batch = u[idx]
        if flip:
            mirror = torch.rand(len(idx), generator=gen) < 0.5
            batch[mirror] = batch[mirror].flip(-1)
        logits = model(batch.to(device))
        loss = F.cross_entropy(logits, y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    return model.cpu().eval()


def save_classifier(model: DomainClassifier, path: str | Path) -> None:
    """Atomic save of hyperparameters and weights (loadable with ``weights_only=True``)."""
    with atomic_open(path) as fh:
        torch.save({"hparams": dict(model.hparams), "state_dict": model.state_dict()}, fh)


def load_classifier(path: str | Path) -> DomainClassifier:
    """Read a file written by :func:`save_classifier`, after checking its zip CRCs; the
    weights must fit the recorded sizes and be finite."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier file '{path}' does not exist (train it with train_classifier)")
    blob = load_torch_file(path, "classifier file", ClassifierFileError)
    if not isinstance(blob, dict) or not isinstance(blob.get("hparams"), dict) or "state_dict" not in blob:
        raise ClassifierFileError(f"'{path}' is not a classifier saved by save_classifier")
    try:
        model = DomainClassifier(**blob["hparams"])
        model.load_state_dict(blob["state_dict"])
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ClassifierFileError(f"classifier file '{path}' does not fit its recorded sizes "
                                  f"({str(exc).splitlines()[0]})") from None
    bad = nonfinite_entries(blob["state_dict"])
    if bad:
        raise ClassifierFileError(f"classifier file '{path}' holds NaN or infinite weights ({', '.join(bad[:3])})")
    return model.eval()


@torch.no_grad()
def predict_proba(classifier: DomainClassifier, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Softmax class probabilities (N, n_classes) of uint8 NHWC images."""
    u = _to_unit_nchw(images, "images")
    device = next(classifier.parameters()).device
    classifier.eval()
    out = [F.softmax(classifier(u[i : i + batch_size].to(device)), dim=1).cpu() for i in range(0, len(u), batch_size)]
    return torch.cat(out).numpy().astype(np.float64)


def accuracy(classifier: DomainClassifier, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of correctly classified images."""
    return float(np.mean(predict_proba(classifier, images).argmax(1) == np.asarray(labels)))


def _class_summary(probs: np.ndarray, n_classes: int) -> tuple[list[int], float]:
    hist = np.bincount(probs.argmax(1), minlength=n_classes)
    return [int(c) for c in hist], float(np.mean(probs.max(1) >= CONFIDENCE))


def domain_metrics(
    classifier: DomainClassifier,
    samples_uint8: np.ndarray,
    reference_uint8: np.ndarray,
    kid: bool = False,
    batch_size: int = 256,
    seed: int = 0,
    kid_subsets: int = 100,
    reference_labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fréchet distance (clean-fid's) of classifier features, optional KID, class histograms and
    confident shares (max softmax >= 0.9) of samples and reference, and, given the
    reference's labels, the classifier's accuracy on the reference (how well its feature
    space knows the domain)."""
    samples, reference = np.asarray(samples_uint8), np.asarray(reference_uint8)
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(f"samples have image shape {samples.shape[1:]}, reference {reference.shape[1:]}")
    device = next(classifier.parameters()).device
    extractor = ClassifierFeatures(classifier)
    feats_s = extract_features(samples, extractor, resize=None, batch_size=batch_size, device=device)
    feats_r = extract_features(reference, extractor, resize=None, batch_size=batch_size, device=device)
    mu_s, sigma_s = feature_statistics(feats_s)
    mu_r, sigma_r = feature_statistics(feats_r)
    hist, confident = _class_summary(predict_proba(classifier, samples, batch_size), classifier.n_classes)
    ref_probs = predict_proba(classifier, reference, batch_size)
    ref_hist, ref_confident = _class_summary(ref_probs, classifier.n_classes)
    if reference_labels is not None and len(reference_labels) != len(reference):
        raise ValueError(f"{len(reference)} reference images but {len(reference_labels)} labels")
    ref_accuracy = (None if reference_labels is None
                    else float(np.mean(ref_probs.argmax(1) == np.asarray(reference_labels))))
    return {
        "classifier_accuracy": ref_accuracy,
        "fd": float(frechet_distance(mu_s, sigma_s, mu_r, sigma_r)),
        "kid": kid_score(feats_r, feats_s, num_subsets=kid_subsets, seed=seed) if kid else None,
        "class_histogram": hist,
        "confident_share": confident,
        "reference_class_histogram": ref_hist,
        "reference_confident_share": ref_confident,
        "n": int(len(samples)),
        "n_reference": int(len(reference)),
    }
