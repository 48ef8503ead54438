"""Code fingerprints (ihdm.provenance): which edits count, and which commands they reach."""

import importlib.util
import re
import shutil
import sys

import pytest

from ihdm import provenance

from conftest import REPO


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package and its provenance module, loaded from the copy."""
    shutil.copytree(REPO / "ihdm", tmp_path / "ihdm", ignore=shutil.ignore_patterns("__pycache__"))
    spec = importlib.util.spec_from_file_location("provenance_copy", tmp_path / "ihdm" / "provenance.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield tmp_path / "ihdm", module
    del sys.modules[spec.name]


def test_commands_reach_only_the_modules_they_run():
    train_ihdm = provenance.command_modules("train", "ihdm")
    assert {"ihdm.train", "ihdm.inverse_heat", "ihdm.heat", "ihdm.unet", "ihdm.data"} <= set(train_ihdm)
    assert "ihdm.ddpm" not in train_ihdm and "ihdm.plots" not in train_ihdm
    assert "ihdm.inverse_heat" not in provenance.command_modules("train", "ddpm")
    assert "ihdm.plots" in provenance.command_modules("plot")
    assert "ihdm.plots" not in provenance.command_modules("sample", "ihdm")
    assert set(provenance.command_modules("collect")) <= {"ihdm.config", "ihdm.errors", "ihdm.io", "ihdm.provenance"}
    with pytest.raises(ValueError, match="not an ihdm command"):
        provenance.code_record("fly")


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_a_code_edit_changes_exactly_the_commands_that_run_it(package_copy):
    pkg, prov = package_copy
    commands = [("train", "ihdm"), ("train", "ddpm"), ("sample", "ihdm"), ("plot", None),
                ("collect", None), ("evaluate", None)]
    before = {c: prov.code_fingerprint(*c) for c in commands}

    def changed():
        prov._parse.cache_clear()
        return {c for c in commands if prov.code_fingerprint(*c) != before[c]}

    # comments, docstrings and blank lines do not count
    _edit(pkg / "inverse_heat.py", '"""', '"""Another docstring line.\n')
    _edit(pkg / "inverse_heat.py", "\nclass IHDM", "\n# a comment\n\n\nclass IHDM")
    assert changed() == set()
    # the loss does: IHDM's training, sampling and evaluation, not DDPM's or the plots
    source = (pkg / "inverse_heat.py").read_text()
    loss = source[source.index("    def loss("):]
    ret = loss.index("        return ")
    _edit(pkg / "inverse_heat.py", loss[ret:ret + 30], loss[ret:ret + 15] + "2.0 * " + loss[ret + 15:ret + 30])
    assert changed() == {("train", "ihdm"), ("sample", "ihdm"), ("evaluate", None)}
    before.update({c: prov.code_fingerprint(*c) for c in commands})
    # a plot: only the plot command
    _edit(pkg / "plots.py", '"ihdm": "#1f5fa8"', '"ihdm": "#1f5fa9"')
    assert changed() == {("plot", None)}


def test_differences_name_what_changed():
    old = {"config": {"heat.K": 5, "train.lr": 1e-3}, "data_sha256": "a" * 64,
           "code": {"modules": {"ihdm.inverse_heat": "x", "cli:train": "y"}}, "device": "cpu", "threads": 2}
    new = {"config": {"heat.K": 6, "train.lr": 1e-3}, "data_sha256": "b" * 64,
           "code": {"modules": {"ihdm.inverse_heat": "z", "cli:train": "y"}}, "device": "cpu", "threads": 4}
    lines = provenance.differences(old, new)
    assert lines[0] == "config heat.K: 5 -> 6"
    assert lines[1].startswith("training images: sha256 aaaaaaaaaaaa")
    assert lines[2] == "code of `ihdm train`: ihdm/inverse_heat.py"
    assert lines[3] == "torch threads: 2 -> 4 (train.threads=2 resumes it)"
    assert provenance.differences(new, new) == []
    assert "no training record" in provenance.differences(None, new)[0]
    # data-parallel processes are recorded, not compared: a run may resume on more of them
    assert provenance.differences(new, new | {"processes": 2}) == []

def test_prepared_data_is_shared_only_by_configs_with_the_same_data_keys():
    """Two experiments on one data set and resolution share prepared data exactly when the
    keys behind the split agree (not data.train_size, not data.download)."""
    base = {"experiment": "a", "data": {"dataset": "folder", "root": "a.zip", "test_root": "t.zip",
                                        "resolution": 32, "channels": 3, "train_size": None,
                                        "download": False}}

    def data_dir(**data):
        return provenance.prepared_data_dir({**base, "data": {**base["data"], **data}})

    assert re.fullmatch(r"resources/folder/32px-[0-9a-f]{8}", data_dir())
    assert data_dir(train_size=500) == data_dir(download=True) == data_dir()
    for change in ({"root": "b.zip"}, {"test_root": "u.zip"}, {"channels": 1}):
        assert data_dir(**change) != data_dir(), change
    assert data_dir(resolution=64).startswith("resources/folder/64px-")
    assert provenance.data_keys(base, "train") == ["data.dataset", "data.root", "data.resolution",
                                                   "data.channels"]
    assert "data.test_root" in provenance.data_keys(base, "test")


def test_a_model_module_without_a_required_fact_is_refused(package_copy):
    pkg, prov = package_copy
    assert set(prov.models()) == {"ihdm", "ddpm", "blurring"}
    _edit(pkg / "ddpm.py", "\nNLL_KEYS = ", "\nNLL_KEYZ = ")
    prov.models.cache_clear()
    prov._parse.cache_clear()
    with pytest.raises(ValueError, match=r"ddpm\.py: a model module must state \['NLL_KEYS'\]"):
        prov.models()
