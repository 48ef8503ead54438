"""What training, sampling and evaluation share: the device, bf16 autocast, the model's
process object, the training images and loading a trained model with its config."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt_io
from . import provenance
from .config import ConfigError, validate
from .data import DataError, load_images
from .unet import build_unet

def resolve_device(cfg: dict) -> torch.device:
    want = cfg.get("device", "auto")
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device' is 'cuda' but no CUDA device is available")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(want)


def autocast(cfg: dict, device: torch.device, stage: str = "train"):
    """bf16 autocast where the config asks for it. Training (``stage="train"``):
    train.mixed_precision on CUDA, train.cpu_bf16 on the CPU. Sampling (``"sample"``):
    sample.mixed_precision when set (true: bf16 on any device, false: fp32), else as
    training. Likelihoods and the other network metrics always run in fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=_bf16(cfg, device, stage))


def _bf16(cfg: dict, device: torch.device, stage: str) -> bool:
    if stage not in ("train", "sample"):
        raise ValueError(f"autocast stage must be 'train' or 'sample', got {stage!r}")
    tc = cfg["train"]
    enabled = tc["mixed_precision"] if device.type == "cuda" else tc["cpu_bf16"]
    if stage == "sample" and cfg["sample"]["mixed_precision"] is not None:
        enabled = cfg["sample"]["mixed_precision"]
    return bool(enabled)


def precision(cfg: dict, device: torch.device | str, stage: str = "train") -> str:
    """"bf16" or "fp32": what :func:`autocast` runs ``stage`` in (for records and tables)."""
    return "bf16" if _bf16(cfg, torch.device(device), stage) else "fp32"


def trained_precision(cfg: dict, state: dict) -> str:
    """The precision a checkpoint was trained in (its training record's device)."""
    device = (state.get("provenance") or {}).get("device") or "cpu"
    return precision(cfg, device, "train")


class Model(Protocol):
    """What every model module's model class implements (IHDM, DDPM, ...). Images in
    tensors are float NCHW in [0, 1]; images as arrays uint8 NHWC."""

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]]  # the sampling variants it supports
    uses_training_images: ClassVar[bool]  # needs prior_images to sample and score

    @classmethod
    def from_config(cls, cfg: dict, *, prior_images: np.ndarray | None = None) -> "Model": ...

    def loss(self, net: nn.Module, u0: torch.Tensor, generator: torch.Generator | None = None,
             shard: slice | None = None) -> torch.Tensor: ...

    def sample(self, net: nn.Module, n: int, shape: tuple[int, int, int], *, seed: int = 0,
               variant: str = "random", trajectory_frames: int = 0, batch_size: int = 256,
               device=None) -> dict:
        """{"images": (N, C, H, W), "trajectory": (N, F, C, H, W) or None, "levels"}."""

    def nll(self, net: nn.Module, images: np.ndarray, *, seed: int = 0, batch_size: int = 64) -> dict:
        """{"bits_per_dim" (= "bpd_discrete"), "bpd_dequantised", "terms_bits_per_dim": {term:
        bpd}, "terms_bits_per_dim_dequantised", "n_images", "n_dims", ...}."""

    def sampler_description(self) -> str:
        """What draws the samples (the sampler and its steps), for sample files and tables."""

    def network_io(self, net: nn.Module, u0: torch.Tensor, fraction: float,
                   generator: torch.Generator | None = None) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(level, network input, network output) at the level ``fraction`` of the chain."""


def model_class(model: str) -> type[Model]:
    """The class of ``model`` ('ihdm', 'ddpm', ...): found in the module that states
    ``MODEL = "<model>"`` (see :func:`ihdm.provenance.models`)."""
    known = provenance.models()
    if model not in known:
        raise ConfigError(f"unknown model '{model}'; choose one of {list(known)}")
    module = importlib.import_module(known[model]["module"])
    for obj in vars(module).values():
        if isinstance(obj, type) and getattr(obj, "name", None) == model and hasattr(obj, "sample"):
            return obj
    raise ConfigError(f"{module.__name__} states MODEL = '{model}' but has no class named so")


def build_model(cfg: dict, model: str, *, prior_images: np.ndarray | None = None) -> Model:
    """``model``'s process object from the config (``prior_images``: uint8 NHWC training
    images, for the models that use them)."""
    return model_class(model).from_config(cfg, prior_images=prior_images)


def model_config(given: dict | None, stored: dict, model: str, path) -> dict:
    """The config to sample or score a trained model with: ``given`` (so that sampling keys
    such as heat.delta or ddpm.sampler take effect), after checking that it agrees with the
    config ``stored`` in the checkpoint on every key that shaped the weights; ``stored``
    when no config is given."""
    if given is None:
        return stored
    was, now = provenance.training_config(stored, model), provenance.training_config(given, model)
    for key in ("data.resolution", "data.channels"):
        was[key], now[key] = provenance.lookup(stored, key), provenance.lookup(given, key)
    differ = [f"{key}: {was.get(key)} in the checkpoint, {now.get(key)} in the config"
              for key in sorted(set(was) | set(now)) if was.get(key) != now.get(key)]
    if differ:
        raise ConfigError(f"'{path}' was trained with other settings than the config gives: "
                          + "; ".join(differ) + ". Sample it with its own config, or train again")
    return given


def training_images(cfg: dict, data_path: str | Path) -> np.ndarray:
    """The uint8 NHWC training images, cut to ``data.train_size`` when set."""
    images, _ = load_images(data_path)
    n = cfg["data"]["train_size"]
    if n is not None:
        if n > len(images):
            raise DataError(
                f"data.train_size is {n} but '{data_path}' holds only {len(images)} images"
            )
        images = images[:n]
    res, ch = cfg["data"]["resolution"], cfg["data"]["channels"]
    if images.shape[1:] != (res, res, ch):
        raise DataError(
            f"'{data_path}' holds images of shape {images.shape[1:]} (H, W, C), but the config "
            f"asks for data.resolution={res} and data.channels={ch}; prepare the data again"
        )
    return images


def load_trained(path: str | Path, given: dict | None, *, device=None, data=None,
                 use_ema: bool = True, training_images_too: bool = True):
    """A trained model ready to sample or score: (net in eval mode, config, model name,
    process, checkpoint state). The config is ``given`` checked against the checkpoint's
    (:func:`model_config`); a model that uses training images (IHDM's prior) gets them from
    ``data`` or the checkpoint's training data, unless ``training_images_too`` is false."""
    net, stored, model, state = load_model(path, device=device, use_ema=use_ema)
    cfg = model_config(given, stored, model, path)
    cls = model_class(model)
    prior = None
    if cls.uses_training_images and training_images_too:
        data_path = data or state.get("data_path")
        if not data_path:
            raise ConfigError(f"{model} needs its training images: pass --data")
        prior = training_images(cfg, data_path)
    return net, cfg, model, cls.from_config(cfg, prior_images=prior), state


def load_model(path: str | Path, device=None, use_ema: bool = True):
    """Load a checkpoint or final.pt: returns (net in eval mode, config, model name, state)."""
    state = ckpt_io.load_checkpoint(path)
    # keys added to the schema after the checkpoint was written take their defaults
    cfg = validate(state["config"], source=f"config stored in '{path}'")
    net = build_unet(cfg, state["model"])
    try:
        net.load_state_dict(state["ema"] if use_ema else state["net"])
    except RuntimeError as exc:
        raise ckpt_io.CheckpointError(
            f"checkpoint '{path}': its weights do not fit the network of its stored config "
            f"({str(exc).splitlines()[0]})") from None
    net = net.to(device or "cpu").eval()
    return net, cfg, state["model"], state
