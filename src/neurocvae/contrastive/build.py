"""Build a `ContrastiveModule` from a composed `neurocvae-train` configuration, or from a
checkpoint alone (the checkpoint carries the configuration and the input shape)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.errors import InputError
from neurocvae.files import read_torch_file

# The parts of a neurocvae-train configuration that define the model (stored in checkpoints).
MODEL_KEYS = ("arch", "shared_dim", "salient_dim", "discriminator", "beta", "gamma", "optimizer",
              "discriminator_optimizer", "model", "seed")


def build_module(cfg: DictConfig | dict[str, Any], input_shape: Sequence[int]
                 ) -> ContrastiveModule:
    """The model for volumes of `input_shape` [X, Y, Z], untrained."""
    cfg = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
    shape = [int(n) for n in input_shape]
    nets = hydra.utils.instantiate(cfg.arch, input_shape=shape, shared_dim=cfg.shared_dim,
                                   salient_dim=cfg.salient_dim)
    discriminator = (hydra.utils.instantiate(cfg.discriminator,
                                             input_dim=cfg.shared_dim + cfg.salient_dim)
                     if cfg.discriminator else None)
    record = {key: OmegaConf.to_container(cfg[key], resolve=True)
              if OmegaConf.is_config(cfg.get(key)) else cfg.get(key) for key in MODEL_KEYS}
    record["input_shape"] = shape
    return ContrastiveModule(
        nets=nets, discriminator=discriminator, beta=hydra.utils.instantiate(cfg.beta),
        gamma=hydra.utils.instantiate(cfg.gamma),
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        discriminator_optimizer=hydra.utils.instantiate(cfg.discriminator_optimizer),
        seed=record["seed"] or 0, config=record,
        **OmegaConf.to_container(cfg.model, resolve=True))


def read_checkpoint(checkpoint: str | Path) -> dict[str, Any]:
    """The contents of a `neurocvae-train` checkpoint (weights only, no pickled code, on the
    CPU)."""
    path = Path(checkpoint)
    state = read_torch_file(path, "no such checkpoint", "checkpoint")
    config = state.get("hyper_parameters", {}).get("config") if isinstance(state, dict) else None
    if not config:
        raise InputError(f"{path}: not a neurocvae-train checkpoint (no stored configuration)")
    return state


def module_from(state: dict[str, Any], source: str | Path = "the checkpoint"
                ) -> ContrastiveModule:
    """The trained model of checkpoint contents (`read_checkpoint`, read from `source`), in
    eval mode."""
    config = state["hyper_parameters"]["config"]
    try:
        module = build_module(config, config["input_shape"])
        module.load_state_dict(state["state_dict"])
    except (InstantiationException, RuntimeError) as error:
        reason = " ".join(str(error).split())[:400]
        raise InputError(f"{source}: this version of neurocvae cannot rebuild its model, "
                         f"probably written by another version ({reason}); load it with the "
                         "version that trained it") from error
    module.on_load_checkpoint(state)
    return module.eval()


def load_module(checkpoint: str | Path, map_location: str | torch.device = "cpu"
                ) -> ContrastiveModule:
    """The trained model of a `neurocvae-train` checkpoint, in eval mode."""
    return module_from(read_checkpoint(checkpoint), checkpoint).to(map_location)
