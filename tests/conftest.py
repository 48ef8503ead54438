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


# --------------------------------------------------------------------------- background runs
# A test whose slow part is waiting (e.g. for SLURM's clock to reach a job's time limit)
# marks itself with @in_background(start): start(tmp_dir) runs as soon as the session's
# tests are collected and returns a handle with stop(); the other tests run meanwhile and
# the test gets the handle through the `background_run` fixture.
_BACKGROUND = pytest.StashKey[dict]()


def in_background(start):
    def mark(test):
        test._ihdm_background = start
        return test

    return mark


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    import tempfile

    runs = session.config.stash.setdefault(_BACKGROUND, {})
    for item in session.items:
        start = getattr(getattr(item, "function", None), "_ihdm_background", None)
        if start is None or item.nodeid in runs:
            continue
        tmp = Path(tempfile.mkdtemp(prefix="ihdm-background-"))
        try:
            runs[item.nodeid] = (tmp, start(tmp))
        except BaseException as exc:  # pytest.skip / pytest.fail too: raised in the test
            runs[item.nodeid] = (tmp, exc)


@pytest.fixture
def background_run(request):
    _, run = request.config.stash[_BACKGROUND][request.node.nodeid]
    if isinstance(run, BaseException):
        raise run
    return run


def pytest_sessionfinish(session):
    import shutil

    for tmp, run in session.config.stash.get(_BACKGROUND, {}).values():
        if hasattr(run, "stop"):
            run.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """The complete DAG of config/test.yaml, run once per session (tests/test_workflow.py's
    run_pipeline), shared by the workflow tests and the report's browser test."""
    from test_workflow import run_pipeline

    return run_pipeline(tmp_path_factory)
