"""Where the Hydra configs live (for editable and regular installs alike), and the resolvers
they use."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

_PACKAGE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)

# Settings that moved, per command config: old key → new key. An override that names the old key
# is applied to the new one, with a warning, so that existing scripts keep working.
MOVED_SETTINGS = {
    "train": {
        "early_stopping.monitor": "monitor",
        "early_stopping.patience": "callbacks.early_stopping.patience",
        **{f"logger.{key}": f"logger.wandb.{key}"
           for key in ("project", "entity", "group", "tags", "mode", "log_images")},
    },
}


def config_dir() -> Path:
    """The folder holding `synth.yaml` and the config groups.

    A wheel ships the configs inside the package (`neurocvae/conf`); an editable install or a
    source checkout uses `conf/` at the top of the repository.
    """
    for candidate in (_PACKAGE / "conf", _PACKAGE.parents[1] / "conf"):
        if (candidate / "synth.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"neurocvae's Hydra configs were not found beside {_PACKAGE}: reinstall the package "
        "(`pip install .`) so that conf/ is shipped with it."
    )


def with_moved_settings(name: str, overrides: list[str]) -> list[str]:
    """`overrides` of `conf/<name>.yaml` with every key of `MOVED_SETTINGS` renamed to its new
    key (`+`, `++` and `~` prefixes kept)."""
    moved = MOVED_SETTINGS.get(name, {})
    renamed = []
    for override in overrides:
        key, equals, value = override.partition("=")
        prefix = key[:len(key) - len(key.lstrip("+~"))]
        new = moved.get(key[len(prefix):])
        if new:
            log.warning("%s has moved to %s: please use the new name", key[len(prefix):], new)
            override = f"{prefix}{new}{equals}{value}"
        renamed.append(override)
    return renamed


def compose_config(name: str, overrides: list[str] | None = None) -> DictConfig:
    """`conf/<name>.yaml` composed with `overrides`, as the command would compose it (inside a
    running Hydra app, or from plain Python such as a notebook)."""
    overrides = with_moved_settings(name, list(overrides or []))
    if GlobalHydra.instance().is_initialized():
        return compose(name, overrides=overrides)
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(name, overrides=overrides)


def slurm_job_id() -> str | None:
    """This SLURM job's id (`<job>_<task>` in an array job), None outside SLURM."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def run_id() -> str:
    """A name for this run that a requeued job gets again: the SLURM job id, else the local
    start time."""
    return slurm_job_id() or datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


# `${neurocvae.run_id:}` in the configs. Cached: resolved once per composed configuration, and
# Hydra's launchers copy the cache into each job, so a sweep's jobs share the sweep's id.
OmegaConf.register_new_resolver("neurocvae.run_id", run_id, use_cache=True, replace=True)


def group_options(*groups: str) -> str:
    """One line per config group, `group: option, option, …`, for a command's `--help`."""
    lines = []
    for group in groups:
        names = sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))
        lines.append(f"{group}: {', '.join(names)}")
    return "\n".join(lines)


# `${neurocvae.groups:net,optim}` in a command's help template: only the groups it uses.
OmegaConf.register_new_resolver("neurocvae.groups", group_options, replace=True)
