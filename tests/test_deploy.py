"""What a lab needs to deploy the workflow: packaging metadata, one set of pinned versions
for the Makefile, the conda environment and the container, the workflow used as a
Snakemake module from another folder.

Solving conda-forge and building the Apptainer image need the network and a container
runtime, so those files are checked statically here: their pins against constraints.txt
(what `make` installs and this environment runs), their installs of the package.
"""

from __future__ import annotations

import ast
import html
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

import ihdm

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# dependencies of the Snakemake process itself, not of the jobs' `ihdm` commands
WORKFLOW_SIDE = {"snakemake", "snakemake-executor-plugin-slurm", "pandas"}
# imported but not needed: bench.py falls back to `resource` without psutil, and
# typing_extensions is imported under TYPE_CHECKING only
NOT_NEEDED = {"psutil", "typing_extensions"}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower()


def _exact_pins(lines: list[str], where: str) -> dict[str, str]:
    """Requirement lines as {name: exact version}; comments and pip options are skipped,
    anything but an exact pin fails."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{where}: {line} is not an exact pin"
        pins[req.name.lower()] = spec.version
    return pins


def constraints() -> dict[str, str]:
    return _exact_pins((REPO / "constraints.txt").read_text().splitlines(), "constraints.txt")


def env_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO / "workflow" / "envs" / "ihdm.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return _exact_pins(pip, "workflow/envs/ihdm.yaml")


# --------------------------------------------------------------------------- packaging
def test_license_and_project_metadata() -> None:
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "ihdm contributors" in license_text
    assert PYPROJECT["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in PYPROJECT["classifiers"]
    assert PYPROJECT["authors"] and PYPROJECT["urls"]
    assert PYPROJECT["version"] == ihdm.__version__


def test_python_m_ihdm_and_version() -> None:
    for cmd in ([sys.executable, "-m", "ihdm", "--version"],
                [str(Path(sys.executable).parent / "ihdm"), "--version"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"ihdm {PYPROJECT['version']}", cmd
    done = subprocess.run([sys.executable, "-m", "ihdm", "describe", "no-such.yaml"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no-such.yaml" in done.stderr


def test_one_minimum_snakemake_version() -> None:
    snakefile = (REPO / "workflow" / "Snakefile").read_text()
    (minimum,) = re.findall(r'min_version\("([\d.]+)"\)', snakefile)
    (snakemake,) = [Requirement(r) for r in PYPROJECT["dependencies"] if _name(r) == "snakemake"]
    assert str(snakemake.specifier) == f">={minimum}"
    assert snakemake.specifier.contains(constraints()["snakemake"])


def _third_party_imports(text: str, python: bool) -> set[str]:
    """Top-level module names imported by a Python file or a Snakefile."""
    if python:
        tree = ast.parse(text)
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        return names
    found = re.findall(r"^(?:from +(\w+)\S* +import|import +(\w+))", text, re.MULTILINE)
    return {a or b for a, b in found}


def test_every_imported_package_is_declared() -> None:
    """What the package and the workflow import (pandas in common.smk, too) is a
    dependency of pyproject.toml, or an optional one imported inside a function."""
    declared = {_name(r) for r in PYPROJECT["dependencies"]}
    optional = {_name(r) for extra in PYPROJECT["optional-dependencies"].values() for r in extra}
    distributions = importlib.metadata.packages_distributions()
    imported = set()
    for path in (REPO / "ihdm").rglob("*.py"):
        imported |= _third_party_imports(path.read_text(), python=True)
    for path in [REPO / "workflow" / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        imported |= _third_party_imports(path.read_text(), python=False)
    missing = {}
    for module in sorted(imported - set(sys.stdlib_module_names) - {"ihdm", "snakemake"} - NOT_NEEDED):
        dists = {d.lower() for d in distributions.get(module, [])}
        assert dists, f"module {module} is imported but no installed distribution provides it"
        if not dists & (declared | optional):
            missing[module] = dists
    assert not missing, f"imported, not in pyproject.toml: {missing}"
    assert "pandas" in declared


def test_catalog_file_and_config_readme() -> None:
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    stack = catalog["usage"]["software-stack-deployment"]
    assert stack["conda"] is True and stack["singularity"] is True
    assert catalog["usage"]["report"] is True
    readme = (REPO / "config" / "README.md").read_text()
    schema = yaml.safe_load((REPO / "ihdm" / "config.schema.yaml").read_text())
    # a row per key group of the schema, and a mention of each of its keys' groups
    for group in schema["properties"]:
        assert f"| `{group}` |" in readme, f"config/README.md: no row for '{group}'"
    for path in ("config.yaml", "test.yaml", "paper/"):
        assert f"`{path}" in readme, path


def test_workflow_schema_is_a_copy_of_the_package_schema() -> None:
    """A file, not a link (a workflow used as a remote module cannot follow a link), and
    equal to the schema the package checks configs with."""
    copy = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert copy.is_file() and not copy.is_symlink()
    assert copy.read_bytes() == (REPO / "ihdm" / "config.schema.yaml").read_bytes(), (
        "cp ihdm/config.schema.yaml workflow/schemas/config.schema.yaml")


# --------------------------------------------------------------------------- environments
def test_constraints_pin_every_dependency_and_this_environment_runs_them() -> None:
    """constraints.txt pins every dependency (test and optional extras too) at a version
    its pyproject.toml requirement allows, and it is what this environment has."""
    pins = constraints()
    wanted = [Requirement(r) for r in PYPROJECT["dependencies"]]
    wanted += [Requirement(r) for extra in PYPROJECT["optional-dependencies"].values() for r in extra]
    for req in wanted:
        assert req.name.lower() in pins, f"constraints.txt: no pin for {req.name}"
        assert req.specifier.contains(pins[req.name.lower()]), (req, pins[req.name.lower()])
    installed = {name: importlib.metadata.version(name) for name in pins}
    differ = {n: (installed[n], v) for n, v in pins.items() if installed[n].split("+")[0] != v}
    assert not differ, f"installed != constraints.txt: {differ}"


def test_makefile_installs_the_pins() -> None:
    makefile = (REPO / "Makefile").read_text()
    (torch_pins,) = re.findall(r"^TORCH_PINS \?= (.+)$", makefile, re.MULTILINE)
    pins = constraints()
    assert {_name(r): Requirement(r).specifier for r in torch_pins.split()} == {
        "torch": Requirement(f"torch=={pins['torch']}").specifier,
        "torchvision": Requirement(f"torchvision=={pins['torchvision']}").specifier,
    }
    assert "pip install -c constraints.txt -e '.[test]'" in makefile


def test_conda_environment_pins_the_runtime_dependencies() -> None:
    """workflow/envs/ihdm.yaml: conda-forge without the default channels, every runtime
    dependency of the `ihdm` commands pinned exactly as in constraints.txt."""
    env = yaml.safe_load((REPO / "workflow" / "envs" / "ihdm.yaml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    pins, in_env = constraints(), env_pins()
    runtime = {_name(r) for r in PYPROJECT["dependencies"]} - WORKFLOW_SIDE
    assert runtime <= set(in_env), runtime - set(in_env)
    assert {n: v for n, v in in_env.items()} == {n: pins[n] for n in in_env}
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert set(re.findall(r'conda:\s*\n\s*"([^"]+)"', rules)) == {"../envs/ihdm.yaml"}


def test_user_environment_uses_the_pins() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip[0] == "-c constraints.txt"


def test_post_deploy_installs_this_version_not_editable() -> None:
    script = (REPO / "workflow" / "envs" / "ihdm.post-deploy.sh").read_text()
    assert re.search(r'^IHDM_VERSION="([^"]+)"$', script, re.MULTILINE).group(1) == PYPROJECT["version"]
    installs = re.findall(r"pip install [^\n]*", script)
    assert installs and all("-e " not in cmd and "--editable" not in cmd for cmd in installs)
    assert all("--no-deps" in cmd for cmd in installs)  # the environment file's pins stay


def test_post_deploy_refuses_another_source(tmp_path: Path) -> None:
    """The script's checks, run for real without conda: a folder that is not the ihdm
    source, or a source of another version, is refused before pip runs."""
    bash = shutil.which("bash")
    script = REPO / "workflow" / "envs" / "ihdm.post-deploy.sh"
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "ihdm"\nversion = "9.9.9"\n')
    for source, message in ((tmp_path, "is not the ihdm source tree"),
                            (other, "is not version")):
        done = subprocess.run([bash, str(script)], env={"IHDM_SOURCE": str(source), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 1 and message in done.stderr, done.stderr


def test_container_installs_the_same_pins() -> None:
    """workflow/envs/ihdm.def: a CUDA PyTorch base of the pinned torch, the package
    installed (not editable) under constraints.txt; the Snakefile declares the image."""
    definition = (REPO / "workflow" / "envs" / "ihdm.def").read_text()
    (base,) = re.findall(r"^From: *(\S+)$", definition, re.MULTILINE)
    image, tag = base.split(":")
    assert image == "pytorch/pytorch" and "cuda" in tag
    assert tag.split("-")[0] == constraints()["torch"]
    assert "constraints.txt /opt/ihdm/constraints.txt" in definition
    installs = re.findall(r"pip install [^\n]*", definition)
    assert installs == ["pip install --no-cache-dir -c /opt/ihdm/constraints.txt /opt/ihdm"]
    version = PYPROJECT["version"]
    assert f"org.opencontainers.image.version {version}" in definition
    snakefile = (REPO / "workflow" / "Snakefile").read_text()
    assert re.search(rf'^container: .*"ihdm-{re.escape(version)}\.sif"\)$', snakefile, re.MULTILINE)
    assert f"apptainer build ihdm-{version}.sif workflow/envs/ihdm.def" in definition
    readme = (REPO / "README.md").read_text()
    assert "--sdm conda" in readme and "--sdm apptainer" in readme


# --------------------------------------------------------------------------- as a module
MODULE_SNAKEFILE = """\
configfile: "config/test.yaml"


module ihdm:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from ihdm
"""


@pytest.fixture(scope="module")
def module_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config/test.yaml run to the end by a project in another folder that imports the
    workflow as a Snakemake module. To keep it short: IHDM only, random samples, no sweeps,
    no classifier and the data's spectrum (the complete DAG runs in tests/test_workflow.py)."""
    from test_workflow import _copy_workflow, snakemake

    tmp = tmp_path_factory.mktemp("module")
    source = _copy_workflow(tmp / "ihdm")
    project = tmp / "project"
    (project / "config").mkdir(parents=True)
    cfg = yaml.safe_load((source / "config" / "test.yaml").read_text())
    cfg["workflow"] = {**cfg["workflow"], "models": ["ihdm"], "photographs": False,
                       "variants": ["random"], "sweep_sizes": [], "delta_sweep": []}
    cfg["evaluate"] = {**cfg.get("evaluate", {}), "domain": False}
    (project / "config" / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (project / "Snakefile").write_text(
        MODULE_SNAKEFILE.format(snakefile=source / "workflow" / "Snakefile"))
    out = snakemake("--cores", "2", cwd=project, timeout=900)
    (project / "snakemake.out").write_text(out)
    return project


@pytest.mark.slow
def test_workflow_runs_as_a_module_from_another_folder(module_run: Path) -> None:
    from test_workflow import planned_jobs, snakemake

    out = (module_run / "snakemake.out").read_text()
    jobs = planned_jobs(out)
    assert jobs["train"] == 1 and jobs["sample"] == 1 and jobs["all"] == 1, jobs
    results = module_run / "results" / "test"
    # the run config, written without onstart, is the validated config
    written = yaml.safe_load((results / "config.yaml").read_text())
    assert written["workflow"]["models"] == ["ihdm"] and written["train"]["log_every"] == 5
    assert (results / "models" / "ihdm" / "final.pt").is_file()
    assert (results / "tables" / "metrics.csv").is_file()
    assert (results / "figures" / "samples_ihdm.png").is_file()
    assert len(list((module_run / "resources" / "mnist5k").glob("28px-*/train.npz"))) == 1
    # nothing was written beside the imported workflow
    assert not (module_run.parent / "ihdm" / "results").exists()
    again = snakemake("-n", "--cores", "1", cwd=module_run)
    assert "Nothing to be done" in again, again[-3000:]


# --------------------------------------------------------------------------- cluster scale
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"


def test_slurm_attempts_grow_and_cover_the_paper_configs() -> None:
    """The train rule's time limit grows with the attempt number, and the attempts cover
    1.3 M steps of every paper config up to 128 px on one GPU at the planned throughput
    (the 256 px ones with the GPUs `ihdm plan` names)."""
    from ihdm.config import load_config
    from ihdm.plan import slurm_attempts, training_plan

    limits = slurm_attempts(SLURM_PROFILE)
    assert limits == sorted(limits) and limits[0] < limits[-1]
    assert len(limits) == yaml.safe_load(SLURM_PROFILE.read_text())["retries"] + 1
    for path in sorted((REPO / "config" / "paper").glob("*.yaml")):
        cfg = load_config(path)
        plan = training_plan(cfg, SLURM_PROFILE)
        assert plan["steps"] == 1_300_000 and plan["gpu_hours"] > 0, path.name
        if cfg["data"]["resolution"] <= 128:
            assert plan["slurm"]["enough"], (path.name, plan)
        else:
            needed = plan["slurm"]["processes_needed"]
            more = training_plan(load_config(path, [f"train.processes={needed}"]), SLURM_PROFILE)
            assert more["slurm"]["enough"] and needed <= 8, (path.name, plan)


def test_plan_arithmetic_and_stated_throughput(tmp_path: Path) -> None:
    from ihdm.config import load_config
    from ihdm.plan import training_plan

    profile = tmp_path / "config.yaml"
    profile.write_text("retries: 2\nset-resources:\n  train:\n    runtime: \"60 * attempt\"\n")
    cfg = load_config(REPO / "config" / "paper" / "cifar10.yaml",
                      ["workflow.steps_per_second=2.5", "train.steps=18000"])
    plan = training_plan(cfg, profile)  # 18000 steps at 2.5/s: 2 h per model, 2 models
    assert plan["throughput"].startswith("stated") and plan["wall_hours_per_model"] == 2.0
    assert plan["gpu_hours"] == 4.0
    assert plan["slurm"] == {"profile": str(profile), "attempt_hours": [1.0, 2.0, 3.0],
                             "hours_over_all_attempts": 6.0, "attempts_needed": 2, "enough": True}
    four = training_plan(load_config(REPO / "config" / "paper" / "cifar10.yaml",
                                     ["train.processes=4"]), profile)
    one = training_plan(load_config(REPO / "config" / "paper" / "cifar10.yaml"), profile)
    assert four["throughput"].startswith("assumed")
    assert four["wall_hours_per_model"] == pytest.approx(one["wall_hours_per_model"] / 4, rel=0.01)
    assert four["gpu_hours"] == pytest.approx(one["gpu_hours"], rel=0.01)


def test_describe_and_plan_commands_print_the_plan() -> None:
    ihdm_cmd = str(Path(sys.executable).parent / "ihdm")
    done = subprocess.run([ihdm_cmd, "describe", str(REPO / "config" / "paper" / "cifar10.yaml")],
                          capture_output=True, text=True, timeout=120, check=True)
    plan = json.loads(done.stdout)["training_plan"]
    assert plan["slurm"]["attempt_hours"][:3] == [24.0, 48.0, 72.0]
    assert plan["throughput"].startswith("assumed")
    done = subprocess.run([ihdm_cmd, "plan", *map(str, sorted((REPO / "config" / "paper").glob("*.yaml")))],
                          capture_output=True, text=True, timeout=120, check=True)
    print(done.stdout)
    rows = [line for line in done.stdout.splitlines() if line.startswith("paper/")]
    assert len(rows) == len(list((REPO / "config" / "paper").glob("*.yaml")))
    assert all(row.endswith("assumed") for row in rows)
    bad = subprocess.run([ihdm_cmd, "plan", str(REPO / "config" / "test.yaml"), "--profile",
                          str(REPO / "README.md")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "README.md" in bad.stderr


def test_multi_gpu_training_gets_processes_times_threads(tmp_path: Path) -> None:
    """Under the SLURM profile a training job with train.processes = 4 and train.threads
    = 3 asks for 4 GPUs and 12 cores and runs each process with 3 torch threads (the
    profile sets no thread count of its own for training); its first attempt has 24 h."""
    from test_workflow import _copy_workflow, _edit_config, snakemake

    work = _copy_workflow(tmp_path)
    _edit_config(work, "train", "processes", 4)
    _edit_config(work, "train", "threads", 3)
    path = work / "config" / "test.yaml"
    path.write_text(path.read_text() + "device: cuda\n")
    out = snakemake("results/test/models/ihdm/final.pt", "-n", "--workflow-profile",
                    str(REPO / "workflow" / "profiles" / "slurm"), "--configfile", "config/test.yaml",
                    cwd=work)
    train = out[out.index("rule train:"):]
    assert re.search(r"resources: .*runtime=1440, gpu=4", train), train[:2000]
    # the job's threads split over its processes (train.threads = job threads // 4): 12
    # cores; the profile's old `set-threads: train: 8` gave 2 per process here
    assert "--set train.threads=3 --on-change restart" in train


# --------------------------------------------------------------------------- the report
def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("IHDM_REQUIRE_BROWSER") == "1":
            pytest.fail("no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return found


@pytest.mark.slow
def test_report_renders_in_a_browser(pipeline, tmp_path: Path) -> None:
    """The report of the complete config/test.yaml run, opened in headless Chromium: it
    opens with the workflow description, and the report's own app shows every figure
    (decoded image) and every table page (an HTML table), each with a caption and labels."""
    from test_workflow import TEST_FIGURES, _copy_run, snakemake

    chromium = _chromium()
    work = _copy_run(pipeline, tmp_path / "run")
    snakemake("--report", "report.html", "--configfile", "config/test.yaml", cwd=work, timeout=300)
    page = (work / "report.html").read_text()
    check_js = (REPO / "tests" / "data" / "report_check.js").read_text()
    end = page.rindex("</body>")
    (work / "checked.html").write_text(f"{page[:end]}<script>{check_js}</script>{page[end:]}")
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=120000",
         "--dump-dom", (work / "checked.html").as_uri()],
        capture_output=True, text=True, timeout=300, check=True)
    dom = done.stdout
    start = dom.rfind('<pre id="ihdm-check">')
    assert start > 0, dom[-3000:]
    check = json.loads(html.unescape(dom[start + len('<pre id="ihdm-check">'):dom.index("</pre>", start)]))
    assert check["error"] is None, check["error"]
    assert check["description"].startswith("IHDM and a DDPM baseline, from data to figures")
    assert "experiment test" in check["description"] and "Where to look" in check["description"]
    results = check["results"]
    pages = ["config", "loss", "metrics", "data_efficiency", "paper_comparison", "delta_sweep",
             "emergent"]
    assert set(results) == {
        *(f"results/test/figures/{name}.png" for name in TEST_FIGURES),
        *(f"results/test/report/{name}.html" for name in pages),
        "results/test/tables/metrics.csv", "results/test/sweep/data_efficiency.csv",
        "results/test/tables/paper_comparison.csv", "results/test/delta/delta_sweep.csv",
        "results/test/tables/emergent.csv"}
    for path, record in results.items():
        assert record["caption"] > 50 and record["labels"], (path, record)
        if path.endswith(".png"):
            assert record["shown"][0] > 100 and record["shown"][1] > 100, (path, record)
        elif path.endswith(".html"):
            assert record["shown"] >= 1 and record["rows"] > 2, (path, record)
    # the loss page: a table per model; the config page: a row per key
    assert results["results/test/report/loss.html"]["shown"] == 2  # IHDM and DDPM
    assert results["results/test/report/config.html"]["rows"] > 60
    assert set(check["categories"]) == {"Run", "Figures", "Tables"}
