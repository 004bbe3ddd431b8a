"""Where the Hydra configs live (for editable and regular installs alike), and the resolvers
they use."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

_PACKAGE = Path(__file__).resolve().parent


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


def compose_config(name: str, overrides: list[str] | None = None) -> DictConfig:
    """`conf/<name>.yaml` composed with `overrides`, as the command would compose it (inside a
    running Hydra app, or from plain Python such as a notebook)."""
    if GlobalHydra.instance().is_initialized():
        return compose(name, overrides=overrides or [])
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(name, overrides=overrides or [])


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
