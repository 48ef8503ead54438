"""Shared fixtures: a tiny config, real MNIST digits, paths to the shared data."""

import json
from pathlib import Path

import numpy as np
import pytest

from ihdm.config import load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The tests run small tensors, for which one thread is faster than several competing
    for a small machine's cores (commands started as subprocesses choose their own)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> dict:
    """config/test.yaml with ``section.key=value`` overrides (as keyword 'section__key')."""
    sets = [f"{k.replace('__', '.')}={json.dumps(v)}" for k, v in overrides.items()]
    return load_config(REPO / "config" / "test.yaml", sets)


@pytest.fixture(scope="session")
def mnist_npz(tmp_path_factory) -> Path:
    """The first 512 of the 5,000 embedded MNIST digits as a prepared .npz."""
    from ihdm.data import load_split, save_images

    images, labels = load_split(tiny_config(), "train")
    path = tmp_path_factory.mktemp("data") / "train.npz"
    save_images(path, images[:512], labels[:512])
    return path


@pytest.fixture(scope="session")
def mnist_images(mnist_npz) -> np.ndarray:
    from ihdm.data import load_images

    return load_images(mnist_npz)[0]
