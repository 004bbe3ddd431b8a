"""What lets a training run survive pre-emption and requeue.

- `checkpoints/last.ckpt` every N batches, at each epoch's end, and when the run is sent
  SIGTERM or SIGUSR1: Lightning finishes the current batch, the checkpoint is written, and the
  process exits with status 128 + the signal. Started again, the run resumes from it exactly.
- One requeue mechanism per setting:
  - plain `sbatch` (`#SBATCH --signal=SIGUSR1@90 --requeue`): on SIGUSR1, after the checkpoint,
    rank 0 runs `scontrol requeue <job id>`. This is Lightning's SLURM auto-requeue moved to the
    batch boundary: Lightning's own saves inside the signal handler, mid-step, and a run resumed
    from that checkpoint trains one batch fewer than an uninterrupted one.
  - Hydra's submitit launcher: submitit requeues (SIGUSR2 before the time limit, resubmitting
    the job into the same folder); neurocvae does not.
  Lightning's own auto-requeue is off in both.
- Multirun and the subprocess DDP launcher never mix (each rank would re-run the whole sweep).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from neurocvae.config import slurm_job_id
from neurocvae.errors import InputError, Stopped

log = logging.getLogger(__name__)


def draw_seed(seed: int, rank: int, batch: int, *salt: int) -> int:
    """The seed of one rank's random draws at one batch: independent across ranks and batches,
    and the same whenever the run reaches that batch (resumed or not)."""
    return int(np.random.SeedSequence([seed, rank, batch, *salt]).generate_state(1)[0])


def check_every_n_batches(every: Any) -> None:
    """Refuse a `checkpoint.every_n_batches` that is neither a whole number ≥ 1 nor null."""
    if every is not None and (not isinstance(every, int) or every < 1):
        raise InputError(f"checkpoint.every_n_batches={every}: expected a whole number ≥ 1, "
                         "or null (a checkpoint at each epoch's end only)")


def fit_or_stop(trainer: pl.Trainer, module: pl.LightningModule,
                datamodule: pl.LightningDataModule, resume: str | None) -> None:
    """`trainer.fit` from the checkpoint `resume` (None: afresh). A run stopped by SIGTERM or
    SIGUSR1 raises `Stopped` with 128 + the signal, after its `LastCheckpoint` wrote
    `last.ckpt`."""
    if resume:  # the run's own checkpoints, expected there
        warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:
        stopper = next(c for c in trainer.callbacks if isinstance(c, LastCheckpoint))
        raise Stopped(stopper.exit_status) from None


def checkpoint_to_resume(ckpt_path: str | None, out_dir: Path) -> str | None:
    """The checkpoint `trainer.fit` starts from: `last` (`checkpoints/last.ckpt`, if any),
    None (a fresh start, refused over an earlier run's checkpoints) or a path."""
    folder = out_dir / "checkpoints"
    if ckpt_path == "last":
        last = folder / "last.ckpt"
        if last.is_file():
            log.info("resuming from %s", last)
            return str(last)
        return None
    if ckpt_path is None:
        if any(folder.glob("*.ckpt")):
            raise InputError(f"{folder} holds checkpoints of an earlier run and ckpt_path=null: "
                             "use ckpt_path=last to resume it, or another out_dir / run_id")
        return None
    if not Path(ckpt_path).is_file():
        raise InputError(f"ckpt_path={ckpt_path}: no such checkpoint")
    return str(ckpt_path)


class LastCheckpoint(Checkpoint):
    """`last.ckpt`: every `every_n_batches` training batches, at each epoch's end, and when the
    run is stopped by SIGTERM or SIGUSR1.

    A signal is only recorded when it arrives (and forwarded to the DDP ranks this process
    started). After each training batch the ranks agree whether any of them has one; if so,
    Lightning's stop flag is set on every rank at once, Lightning raises `SIGTERMException` at
    that batch on every rank, and this callback writes the checkpoint then. Lightning's own
    handler would set the flag whenever the signal lands on each rank, and broadcast from
    inside the handler: ranks could stop at different batches, or its broadcast meet another
    collective, and hang. SIGUSR1 is handled the same way and, in a SLURM job that submitit
    does not manage, requeues the job after the checkpoint. A `Checkpoint`, so Lightning runs
    it after the other callbacks, whose state it then holds.
    """

    def __init__(self, path: Path, every_n_batches: int | None = None) -> None:
        self.path, self.every_n_batches = Path(path), every_n_batches
        self.signal: int | None = None

    def _save(self, trainer: pl.Trainer) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.strategy.reduce_boolean_decision(self.signal is not None, all=False):
            trainer._signal_connector.received_sigterm = True  # every rank, this batch
            return
        # an epoch's last batch is saved at the epoch's end, after validation
        if (self.every_n_batches and batch_idx + 1 < trainer.num_training_batches
                and pl_module.batches_seen % self.every_n_batches == 0):
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(signum, self._recorder(trainer))

    def _recorder(self, trainer: pl.Trainer) -> Any:
        def handler(signum: int, frame: Any) -> None:
            if self.signal is None and trainer.strategy.launcher is not None:
                trainer.strategy.launcher.kill(signum)  # the ranks this process started
            self.signal = signum
        return handler

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        self._save(trainer)
        log.warning("stopped by %s after batch %d: wrote %s; the same command resumes",
                    signal.Signals(self.signal or signal.SIGTERM).name, pl_module.batches_seen,
                    self.path)
        if self.signal == signal.SIGUSR1 and trainer.is_global_zero and requeues_itself():
            job = slurm_job_id()
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if done.returncode:
                log.error("scontrol requeue %s failed: %s", job, done.stderr.strip())
            else:
                log.warning("requeued SLURM job %s", job)

    @property
    def exit_status(self) -> int:
        """128 + the signal, the shell's convention for a process a signal stopped."""
        return 128 + int(self.signal or signal.SIGTERM)


def spawns_processes(trainer_cfg: DictConfig) -> bool:
    """Whether Lightning will start the DDP ranks itself (by re-running this command), rather
    than find them started by SLURM (`srun`, one task per device) or torchrun."""
    strategy = str(trainer_cfg.get("strategy", "auto"))
    devices, nodes = trainer_cfg.get("devices", 1), trainer_cfg.get("num_nodes", 1)
    several = str(devices) not in ("1", "[0]") or int(nodes or 1) > 1
    return ("ddp" in strategy and "spawn" not in strategy and several
            and not SLURMEnvironment.detect() and not TorchElasticEnvironment.detect())


def check_launch(trainer_cfg: DictConfig, multirun: bool) -> None:
    """Refuse a multirun whose jobs would start DDP ranks by re-running the command."""
    if multirun and spawns_processes(trainer_cfg):
        raise InputError(
            "a multirun (-m) with a multi-process trainer: Lightning starts each DDP rank by "
            "re-running the command, so every rank would re-run the whole sweep. Use "
            "hydra/launcher=slurm (SLURM starts one task per GPU), or run the points as "
            "separate single runs")


def requeues_itself() -> bool:
    """Whether this is a SLURM job that neurocvae requeues (submitit requeues its own)."""
    return SLURMEnvironment.detect() and os.environ.get("SUBMITIT_EXECUTOR") != "slurm"


def cluster_plugins() -> list[Any]:
    """Under SLURM, Lightning's auto-requeue is turned off (see the module's docstring)."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
