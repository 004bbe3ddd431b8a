"""An evaluation sent to the W&B run of the training run it evaluates (when that run logged to
W&B): the headline metrics (`eval/<column>` in the run's summary), the table of both spaces, and
the group-level figures (embedding, curves, each group's salient map). The example scans are
pictures of subjects' brains: they go only with `logger.wandb.log_images=true`, as in training.
The W&B run is the training run's (its id in `<run>/wandb_id`), in the same mode (offline unless
the run was online), so the evaluation lands beside the curves.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from neurocvae.evaluation.report import headline
from neurocvae.logs import WANDB_ID_FILE

log = logging.getLogger(__name__)
GROUP_FIGURES = ("embedding", "curves")  # figures of groups, not of a subject's brain


def wandb_settings(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The W&B settings of a training run that logged to W&B (None otherwise, or when its mode
    is `disabled`)."""
    settings = OmegaConf.select(cfg, "logger.wandb")
    if not settings or not (run_dir / WANDB_ID_FILE).is_file():
        return None
    settings = OmegaConf.to_container(settings, resolve=True)
    return None if settings.get("mode") == "disabled" else settings


def log_evaluation(cfg: DictConfig, run_dir: Path, out_dir: Path, metrics: dict[str, Any],
                   pictures: dict[str, Path]) -> bool:
    """Send the evaluation to the training run's W&B run; False when that run has none."""
    settings = wandb_settings(cfg, run_dir)
    if settings is None:
        return False
    import wandb

    run = wandb.init(project=settings["project"], entity=settings.get("entity"),
                     id=(run_dir / WANDB_ID_FILE).read_text().strip(), resume="allow",
                     dir=str(run_dir), mode=settings["mode"], reinit="create_new")
    try:
        split = metrics["split"]
        scores = {f"eval/{column}": value for column, value in headline(metrics).items()
                  if not math.isnan(value)}
        run.summary.update(scores | {"eval/split": split})
        table = wandb.Table(columns=["metric", "value"],
                            data=[[k.removeprefix("eval/"), v] for k, v in scores.items()])
        images = {f"eval/{name}": wandb.Image(str(path)) for name, path in pictures.items()
                  if name in GROUP_FIGURES or (name == "examples" and settings.get("log_images"))}
        for m in metrics.get("salient_maps", []):
            if m.get("png"):
                images[f"eval/salient_map_{m['group']}"] = wandb.Image(str(out_dir / m["png"]))
        run.log({"eval/headline": table, **images})
    finally:
        run.finish()
    log.info("evaluation sent to the W&B run %s (mode %s)", run.id, settings["mode"])
    return True
