"""What made a result: the config keys, the data and the code behind it.

A training checkpoint stores a *training record* (the config keys that shape the
weights, the sha256 of the training images, a fingerprint of the code that trains) and a
resume compares it with the record of the run that wants to continue. The workflow puts
the code fingerprint of each ``ihdm`` command into its rules' ``params``, so an edit to
the loss retrains and an edit to a plot redraws only figures.

Code fingerprints are taken from the syntax tree of each module with docstrings
removed: comments, docstrings and formatting do not count, any other change does. A
command's code is its ``cmd_<name>`` function in ``cli.py`` (with the ``cli`` helpers it
calls) and every ``ihdm`` module it imports, directly or through other modules, at any
depth and from inside functions too.

This module uses the standard library only: the workflow imports it while it builds the
DAG, without torch.
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name
RUNTIME = f"{PACKAGE}.runtime"  # the module that builds models from their names

#: config keys (dotted; a section name stands for all its keys) that shape the weights of
#: every model; a model adds those of its own process (its module's TRAINING_KEYS)
COMMON_TRAINING_KEYS = (
    "seed", "data.train_size", "unet",
    "train.batch_size", "train.lr", "train.adam_beta1", "train.adam_beta2", "train.adam_eps",
    "train.warmup_steps", "train.grad_clip", "train.ema_decay", "train.ema_warmup",
    "train.mixed_precision", "train.cpu_bf16", "train.compile", "train.channels_last",
)
#: keys that say how long to train, not what: the weights after step s do not depend on
#: them, so a run resumes across a change (a longer train.steps extends it)
LENGTH_KEYS = ("train.steps", "train.time_budget_min")


# --------------------------------------------------------------------------- config keys
def lookup(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def training_keys(model: str) -> tuple[str, ...]:
    """The dotted config keys that shape the weights of ``model``: the common ones and
    the model module's TRAINING_KEYS."""
    return COMMON_TRAINING_KEYS + tuple(model_info(model)["training_keys"])


#: data keys that do not change a prepared split: data.train_size cuts the split at
#: training time, data.download only says whether it may be fetched
UNPREPARED_DATA_KEYS = ("train_size", "download")


def data_keys(cfg: dict, split: str) -> list[str]:
    """The dotted data keys ``ihdm prepare`` reads for ``split`` (data.test_root only for
    the test split)."""
    ignored = set(UNPREPARED_DATA_KEYS) | ({"test_root"} if split == "train" else set())
    return [f"data.{key}" for key in cfg["data"] if key not in ignored]


def data_digest(cfg: dict) -> str:
    """8 hex digits of every data key either split is prepared from: experiments share
    prepared data (the workflow's resources/<dataset>/<res>px-<digest>/) only when these
    agree."""
    keys = sorted(set(data_keys(cfg, "train")) | set(data_keys(cfg, "test")))
    text = json.dumps({key: lookup(cfg, key) for key in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def prepared_data_dir(cfg: dict) -> str:
    """Where the workflow keeps the prepared splits of ``cfg``'s data, relative to its
    working directory."""
    data = cfg["data"]
    return f"resources/{data['dataset']}/{data['resolution']}px-{data_digest(cfg)}"


# --------------------------------------------------------------------------- models
#: what a model module states at its top level (literals), read here without importing it
#: (SAMPLING_KEYS: the keys read by sampling and scoring, not by training; NLL_KEYS: the
#: model's own keys behind its NLL)
MODEL_FACTS = {"MODEL": "name", "VARIANTS": "variants", "TRAINING_KEYS": "training_keys",
               "SAMPLING_KEYS": "sampling_keys", "NLL_KEYS": "nll_keys"}


@cache
def models() -> dict[str, dict]:
    """Every model of the package: {name: {"module", "variants", "training_keys",
    "sampling_keys", "nll_keys"}}, from the modules that state ``MODEL = "<name>"`` at
    their top level (in file-name order). The workflow and the CLI read the models from
    here; adding a model is adding its module."""
    found = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        top = {node.targets[0].id: node.value for node in _parse(path).body
               if isinstance(node, ast.Assign) and len(node.targets) == 1
               and isinstance(node.targets[0], ast.Name) and node.targets[0].id in MODEL_FACTS}
        facts = {MODEL_FACTS[k]: ast.literal_eval(v) for k, v in top.items()} if "MODEL" in top else {}
        if "name" in facts:
            missing = [name for name, fact in MODEL_FACTS.items() if fact not in facts]
            if missing:
                raise ValueError(f"{path}: a model module must state {missing} at its top level")
            name = facts.pop("name")
            found[name] = {"module": f"{PACKAGE}.{path.stem}", **facts}
    return found


def model_info(model: str) -> dict:
    known = models()
    if model not in known:
        raise ValueError(f"unknown model '{model}'; the package has {list(known)}")
    return known[model]


def training_config(cfg: dict, model: str) -> dict:
    """{dotted key: value} of the keys that shape ``model``'s weights (sections expanded)."""
    out = {}
    for key in training_keys(model):
        value = lookup(cfg, key)
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- code
def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _digest(node: ast.AST) -> str:
    return hashlib.sha256(ast.dump(node, include_attributes=False).encode()).hexdigest()


def module_file(module: str) -> Path | None:
    """The source file of ``ihdm.x.y`` (a module or a package's __init__), or None."""
    parts = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _parse(path: Path) -> ast.Module:
    return _strip_docstrings(ast.parse(path.read_text(), filename=str(path)))


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _imported(node: ast.AST, package: str) -> set[str]:
    """The ``ihdm`` modules that the import statements anywhere below ``node`` name."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            found.update(a.name for a in sub.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(sub, ast.ImportFrom):
            if sub.level:
                base = package.split(".")
                base = base[: len(base) - sub.level + 1]
                target = ".".join(base + ([sub.module] if sub.module else []))
            else:
                target = sub.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            found.add(target)
            # `from . import checkpoint` and `from .metrics import fid` import modules
            found.update(f"{target}.{a.name}" for a in sub.names)
    modules = set()
    for name in found:  # a module's parent packages run their __init__ too
        parts = name.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    # the root package's __init__ holds metadata only (its version would rerun everything)
    return {m for m in modules if m != PACKAGE and module_file(m) is not None}


def module_closure(modules: set[str], exclude: frozenset[str] = frozenset()) -> list[str]:
    """``modules`` and every ``ihdm`` module they import, transitively (not through or
    into the modules in ``exclude``)."""
    seen: set[str] = set(exclude)
    modules = set(modules) - exclude
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        todo.extend(_imported(_parse(path), _package_of(name, path)) - seen)
    return sorted(seen - exclude)


def import_graph() -> dict[str, set[str]]:
    """{module: the ihdm modules it imports} over the whole package, imports inside
    functions included (a module's own parent packages left out)."""
    graph = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = {m for m in _imported(_parse(path), _package_of(name, path))
                       if m != name and not name.startswith(m + ".")}
    return graph


def _command_nodes(command: str) -> list[ast.AST]:
    """``cmd_<command>`` in cli.py and the cli-level functions it calls, transitively."""
    tree = _parse(PACKAGE_DIR / "cli.py")
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    name = f"cmd_{command.replace('-', '_')}"
    if name not in defs:
        raise ValueError(f"'{command}' is not an ihdm command (no {name} in cli.py)")
    nodes, todo = {}, [name]
    while todo:
        fn = defs[todo.pop()]
        nodes[fn.name] = fn
        called = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        todo.extend(c for c in called if c in defs and c not in nodes)
    # cli's module-level imports too (what names like load_config refer to)
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return [nodes[k] for k in sorted(nodes)] + top


def command_modules(command: str, model: str | None = None) -> list[str]:
    """The ``ihdm`` modules whose code ``ihdm <command>`` runs (cli.py counted separately);
    for one ``model``, without the other models' modules."""
    if model is not None:
        model_info(model)  # a known model
    imported: set[str] = set()
    for node in _command_nodes(command):
        imported |= _imported(node, PACKAGE)
    # runtime.build_model imports the model modules by name: a command that builds a model
    # runs the given model's module, or every model's when no model is given
    chosen = [model] if model is not None else list(models())
    others = frozenset(info["module"] for name, info in models().items() if name not in chosen)
    closure = module_closure(imported, others)
    if RUNTIME in closure:
        closure = module_closure(set(closure) | {models()[m]["module"] for m in chosen}, others)
    return closure


def code_record(command: str, model: str | None = None) -> dict:
    """{"fingerprint", "modules": {module: digest}} of the code ``ihdm <command>`` runs
    (for one ``model`` when given)."""
    modules = {"cli:" + command: hashlib.sha256(
        "".join(_digest(n) for n in _command_nodes(command)).encode()).hexdigest()}
    for name in command_modules(command, model):
        modules[name] = _digest(_parse(module_file(name)))
    fingerprint = hashlib.sha256(json.dumps(modules, sort_keys=True).encode()).hexdigest()
    return {"fingerprint": fingerprint, "modules": modules}


def code_fingerprint(command: str, model: str | None = None) -> str:
    """A short digest of the code ``ihdm <command>`` runs, for a workflow rule's params."""
    return code_record(command, model)["fingerprint"][:16]


# --------------------------------------------------------------------------- records
def training_record(cfg: dict, model: str, data_sha256: str, *, device: str,
                    threads: int | None, processes: int = 1) -> dict:
    """What the weights of a training run depend on: the training config keys, the sha256
    of the training images (``data.array_sha256`` of the uint8 NHWC array after
    data.train_size, not of the file: the same images written twice give the same digest),
    the code of ``ihdm train``, the device type and, on the CPU, the number of torch threads
    (its reductions split the work by thread, so another count gives other weights). The
    number of data-parallel processes is recorded but is no difference: the shards make up
    the one-process batch with its draws, so the weights agree to ~1e-4 and a run may
    resume on more or fewer processes."""
    return {
        "config": training_config(cfg, model),
        "data_sha256": data_sha256,
        "code": code_record("train", model),
        "device": device,
        "threads": threads if device == "cpu" else None,
        "processes": int(processes),
    }


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 20 else text[:12] + "…"


def differences(old: dict | None, new: dict) -> list[str]:
    """What differs between two training records, one line each ("heat.K: 5 -> 10")."""
    if not old:
        return ["the checkpoint has no training record (written by an older ihdm)"]
    lines = []
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    for key in sorted(set(old_cfg) | set(new_cfg)):
        a, b = old_cfg.get(key, "<absent>"), new_cfg.get(key, "<absent>")
        if a != b:
            lines.append(f"config {key}: {_short(a)} -> {_short(b)}")
    if old.get("data_sha256") != new["data_sha256"]:
        lines.append(f"training images: sha256 {_short(old.get('data_sha256'))} -> "
                     f"{_short(new['data_sha256'])}")
    old_mods = old.get("code", {}).get("modules", {})
    new_mods = new["code"]["modules"]
    changed = sorted(m for m in set(old_mods) | set(new_mods) if old_mods.get(m) != new_mods.get(m))
    if changed:
        names = [m.replace("cli:", "cli.py cmd_") if m.startswith("cli:")
                 else str(module_file(m).relative_to(PACKAGE_DIR.parent)) if module_file(m) else m
                 for m in changed]
        lines.append("code of `ihdm train`: " + ", ".join(names))
    if old.get("device") != new.get("device"):
        lines.append(f"device: {old.get('device')} -> {new.get('device')}")
    elif old.get("threads") != new.get("threads"):
        hint = f" (train.threads={old['threads']} resumes it)" if old.get("threads") else ""
        lines.append(f"torch threads: {old.get('threads')} -> {new.get('threads')}{hint}")
    return lines
