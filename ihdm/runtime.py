"""What training, sampling and evaluation share: the device, bf16 autocast, the model's
process object, the training images and loading a trained model with its config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt_io
from .config import ConfigError, validate
from .data import DataError, load_images
from .unet import build_unet

MODELS = ("ihdm", "ddpm")


def resolve_device(cfg: dict) -> torch.device:
    want = cfg.get("device", "auto")
    if want == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device' is 'cuda' but no CUDA device is available")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(want)


def autocast(cfg: dict, device: torch.device):
    """bf16 autocast where the config asks for it: train.mixed_precision on CUDA,
    train.cpu_bf16 on the CPU. Used for training, sampling and likelihoods alike."""
    tc = cfg["train"]
    enabled = tc["mixed_precision"] if device.type == "cuda" else tc["cpu_bf16"]
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def build_process(cfg: dict, model: str):
    """The loss/sampler object for ``model`` ('ihdm' or 'ddpm')."""
    if model == "ihdm":
        from .inverse_heat import IHDM

        return IHDM.from_config(cfg)
    if model == "ddpm":
        from .ddpm import DDPM

        return DDPM.from_config(cfg)
    raise ConfigError(f"unknown model '{model}'; choose one of {MODELS}")


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


def load_model(path: str | Path, device=None, use_ema: bool = True):
    """Load a checkpoint or final.pt: returns (net in eval mode, config, model name, state)."""
    state = ckpt_io.load_checkpoint(path)
    # keys added to the schema after the checkpoint was written take their defaults
    cfg = validate(state["config"], source=f"config stored in '{path}'")
    net = build_unet(cfg)
    try:
        net.load_state_dict(state["ema"] if use_ema else state["net"])
    except RuntimeError as exc:
        raise ckpt_io.CheckpointError(
            f"checkpoint '{path}': its weights do not fit the network of its stored config "
            f"({str(exc).splitlines()[0]})") from None
    net = net.to(device or "cpu").eval()
    return net, cfg, state["model"], state
