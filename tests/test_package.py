"""The package's shape: no import circles, every model module states what the workflow
and the CLI read, and the models implement one interface."""

import graphlib
import inspect

import pytest

from ihdm import provenance
from ihdm.runtime import Model, model_class


def test_no_import_circle():
    graph = provenance.import_graph()
    assert {"ihdm.io", "ihdm.train", "ihdm.cli", "ihdm.metrics.fid"} <= set(graph)
    graphlib.TopologicalSorter(graph).static_order()  # raises CycleError on a circle
    # the ground floor imports nothing above it
    assert graph["ihdm.errors"] == set()
    assert graph["ihdm.io"] <= {"ihdm.errors"}


@pytest.mark.parametrize("name", list(provenance.models()))
def test_every_model_implements_the_interface(name):
    info = provenance.models()[name]
    cls = model_class(name)
    assert cls.name == name and tuple(cls.variants) == tuple(info["variants"])
    assert "random" in cls.variants and isinstance(cls.uses_training_images, bool)
    for method in ("from_config", "loss", "sample", "nll"):
        assert callable(getattr(cls, method)), method
    # sample takes the interface's arguments by keyword
    params = inspect.signature(cls.sample).parameters
    assert {"seed", "variant", "trajectory_frames", "batch_size", "device"} <= set(params)
    assert {"net", "images", "seed"} <= set(inspect.signature(cls.nll).parameters)
    assert set(info["training_keys"]) <= set(provenance.training_keys(name))
    # every method of the interface (runtime.Model) is there
    interface = {n for n in vars(Model) if not n.startswith("_")}
    assert interface <= set(dir(cls)), interface - set(dir(cls))


def test_models_come_from_the_model_modules():
    assert set(provenance.models()) == {"ihdm", "ddpm", "blurring"}
    assert provenance.models()["ihdm"]["module"] == "ihdm.inverse_heat"
    assert provenance.models()["blurring"]["module"] == "ihdm.blurring"
    from ihdm.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    model_choices = next(a.choices for a in train._actions if a.dest == "model")
    assert list(model_choices) == list(provenance.models())


def _schema():
    import yaml

    return yaml.safe_load((provenance.PACKAGE_DIR / "config.schema.yaml").read_text())


def test_the_schema_lists_the_package_models_and_their_variants():
    """workflow.models and workflow.variants accept exactly the models of the package and
    the variants they sample (a new model module needs its enum entry)."""
    workflow = _schema()["properties"]["workflow"]["properties"]
    assert set(workflow["models"]["items"]["enum"]) == set(provenance.models())
    variants = {v for info in provenance.models().values() for v in info["variants"]}
    assert set(workflow["variants"]["items"]["enum"]) == variants


@pytest.mark.parametrize("name", list(provenance.models()))
def test_every_key_of_a_model_section_is_a_training_or_a_sampling_key(name):
    """A key added to a model's config section must be named in TRAINING_KEYS (retrains)
    or SAMPLING_KEYS (resamples): the workflow reruns on those lists only."""
    info = provenance.models()[name]
    properties = _schema()["properties"]
    own = set(info["training_keys"]) | set(info["sampling_keys"])
    sections = {key.split(".")[0] for key in own} - {"evaluate"}
    in_sections = {f"{s}.{k}" for s in sections for k in properties[s]["properties"]}
    assert in_sections == own
    assert not set(info["training_keys"]) & set(info["sampling_keys"])
    every_key = {f"{s}.{k}" for s in properties for k in properties[s].get("properties", {})}
    assert set(info["nll_keys"]) <= every_key
