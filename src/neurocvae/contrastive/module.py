"""`ContrastiveModule`: the cVAE / RAE with its TC discriminator, trained by manual optimisation.

One batch `{"target": {"image": [B, 1, X, Y, Z]}, "background": {…}}`, two steps:

1. model step (the discriminator's parameters frozen):
   loss = REC_tg + REC_bg + β_t·(KL_s,tg + KL_z,tg + KL_z,bg)  [RAE: ½‖codes‖² instead of KL]
          + γ_t·TC + w_bg·P(s_bg) + w_mmd·MMD(z_bg, z_tg) + λ·L_REG(decoder)
2. discriminator step on detached codes, with its own optimiser.

REC is α × the mean squared voxel error per scan. `reconstruction="fixed"` takes α as given;
`"calibrated"` (the default) uses the Gaussian decoder whose variance is the batch's mean
squared error, α = N_vox / (2σ²), plus (N_vox / 2)·log σ², so the weight of the data against
the KL follows the fit (`losses.calibrated_alpha`; logged as `alpha`). Validation gives each
scan its own σ², so that `val/rec` does not depend on how the scans are batched (or sharded
over DDP ranks).

Codes are sampled in training (Gaussian latents) and are the means in validation and encoding.
Backgrounds are decoded from [z_bg ‖ 0]. β_t, γ_t follow their schedules over the module's own
batch counter, which checkpoints carry. A non-finite loss or gradient raises `TrainingDiverged`
before any weight changes.

Random draws (the code noise, the discriminator's permutation, the gradient penalty's
projections) come from a generator seeded by (seed, rank, batch): each DDP rank draws its own,
and a run resumed from any checkpoint draws exactly what an uninterrupted run would have.

Under DDP every rank encodes, permutes and discriminates its own batch (codes are not gathered
across ranks: the product of marginals pairs subjects within a device's batch) and gradients are
averaged by DDP. Each step's logged values are averaged over ranks (one all-reduce per step), so
every rank holds the same epoch means; the schedules' batch counter is the same on every rank.

Logged (`train/…_step` per step, `train/…_epoch` and `val/…` per epoch): `loss`, `rec`,
`rec_target`, `rec_background`, `kl_salient`, `kl_shared_target`, `kl_shared_background`
(RAE: `code_…`), `tc`, `background_salient`, `shared_mmd`, `decoder_reg`, `disc_loss`,
`disc_acc`, `disc_acc_joint`, `disc_acc_product`, `beta`, `gamma`, `grad_norm`. `val/rec` does
not move with β or γ: it is the quantity early stopping and the best checkpoint watch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch

from neurocvae.contrastive import losses
from neurocvae.contrastive.discriminator import (
    PRODUCTS,
    DiscriminatorWatch,
    TCDiscriminator,
    product_of_marginals,
)
from neurocvae.contrastive.nets import ContrastiveNets
from neurocvae.contrastive.schedules import Schedule
from neurocvae.errors import TrainingDiverged
from neurocvae.runs import draw_seed

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
DECODER_REGULARISERS = ("none", "l2", "gp")


@dataclass
class ForwardPass:
    """One forward pass over n targets followed by n backgrounds (rows [:n] and [n:])."""

    n: int
    salient_mu: torch.Tensor       # [n or 2n, S]: targets (and backgrounds when penalised)
    salient_logvar: torch.Tensor | None
    salient: torch.Tensor          # the codes used (sampled in training)
    shared_mu: torch.Tensor        # [2n, Z]
    shared_logvar: torch.Tensor | None
    shared: torch.Tensor
    reconstruction: torch.Tensor   # [2n, 1, X, Y, Z]

    @property
    def joint(self) -> torch.Tensor:
        """[n, Z + S]: the targets' codes [z ‖ s], the discriminator's 'joint' sample."""
        return torch.cat([self.shared[:self.n], self.salient[:self.n]], dim=1)


def rows_of(tensor: torch.Tensor | None, part: slice) -> torch.Tensor | None:
    return None if tensor is None else tensor[part]


class ContrastiveModule(pl.LightningModule):
    """The contrastive model (docs/science.md §4): encoders and decoder trained on batches of
    targets and backgrounds, with an optional total-correlation discriminator.

    Args:
        nets: the shared and salient encoders and the decoder (`ContrastiveNets`).
        discriminator: the TC discriminator on [z ‖ s]; None drops the TC term (γ must be 0).
        beta, gamma: schedules of the prior's and the TC term's weights over training batches.
        optimizer, discriminator_optimizer: factories taking parameters (Hydra `_partial_`).
        alpha: the reconstruction weight, α × the mean squared voxel error per scan, with
            `reconstruction="fixed"`; "calibrated" sets α = N_vox/(2σ²) from the batch's error.
        product: how the discriminator's product-of-marginals sample is drawn ("permute" the
            salient codes across targets, the original's "half_swap", or "per_dim").
        background_salient, background_salient_weight: the penalty pulling the backgrounds'
            salient codes to 0 ("none", "l2", "mmd", "w2") and its weight.
        shared_mmd_weight: weight of MMD(z_bg, z_tg), targets' and backgrounds' shared codes.
        background_weight: weight of the backgrounds' reconstruction against the targets'.
        decoder_reg, decoder_reg_weight: the RAE's decoder regulariser ("none", "l2", "gp")
            and its weight.
        gradient_clip: the largest gradient norm of the model step (None: no clipping).
        watch_patience: epochs of a discriminator at chance or saturated before a warning.
        channels_last: run the nets in the channels-last 3-D layout.
        seed: of the per-batch random draws (the same whenever the run reaches a batch).
        config: the composed run configuration, stored in checkpoints so that
            `neurocvae.contrastive.load_module` can rebuild the model from a checkpoint alone.
    """

    def __init__(self, *, nets: ContrastiveNets, discriminator: TCDiscriminator | None,
                 beta: Schedule, gamma: Schedule, optimizer: OptimizerFactory,
                 discriminator_optimizer: OptimizerFactory | None = None,
                 alpha: float = 250_000.0, reconstruction: str = "fixed",
                 product: str = "permute",
                 background_salient: str = "none", background_salient_weight: float = 0.0,
                 shared_mmd_weight: float = 0.0, background_weight: float = 1.0,
                 decoder_reg: str = "none",
                 decoder_reg_weight: float = 0.0, gradient_clip: float | None = None,
                 watch_patience: int = 3, channels_last: bool = False, seed: int = 0,
                 config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if product not in PRODUCTS:
            raise ValueError(f"product={product!r}: expected one of {PRODUCTS}")
        if background_salient not in losses.BACKGROUND_SALIENT:
            raise ValueError(f"background_salient={background_salient!r}: expected one of "
                             f"{losses.BACKGROUND_SALIENT}")
        if reconstruction not in losses.RECONSTRUCTIONS:
            raise ValueError(f"reconstruction={reconstruction!r}: expected one of "
                             f"{losses.RECONSTRUCTIONS}")
        if decoder_reg not in DECODER_REGULARISERS:
            raise ValueError(f"decoder_reg={decoder_reg!r}: expected one of "
                             f"{DECODER_REGULARISERS}")
        self.save_hyperparameters(ignore=["nets", "discriminator", "beta", "gamma", "optimizer",
                                          "discriminator_optimizer"])
        self.automatic_optimization = False
        self.layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.nets = nets.to(memory_format=self.layout)
        self.discriminator = discriminator
        self.beta, self.gamma = beta, gamma
        self.optimizer, self.discriminator_optimizer = optimizer, discriminator_optimizer
        self.batches_seen = 0  # training batches so far: the schedules' clock
        self.watch = DiscriminatorWatch(patience=watch_patience)
        self.epoch_sums: dict[str, torch.Tensor] = {}  # this epoch's training logs, summed
        self.epoch_batches = 0
        self.epoch_of_sums = -1

    # --- the model ------------------------------------------------------------------------

    @property
    def stochastic(self) -> bool:
        return self.nets.stochastic

    def generator(self, *salt: int) -> torch.Generator:
        """A generator on the module's device for this rank and batch (`draw_seed`)."""
        seed = draw_seed(self.hparams.seed, self.global_rank, self.batches_seen, *salt)
        return torch.Generator(device=self.device).manual_seed(seed)

    @staticmethod
    def _code(mu: torch.Tensor, logvar: torch.Tensor | None,
              generator: torch.Generator | None) -> torch.Tensor:
        if logvar is None or generator is None:
            return mu
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + noise * torch.exp(0.5 * logvar)

    def forward_pass(self, target: torch.Tensor, background: torch.Tensor, *,
                     draws: torch.Generator | None) -> ForwardPass:
        """Encode both sets (one call per encoder, so normalisation sees both) and decode
        targets from [z ‖ s] (their shared means less their pattern share,
        `ContrastiveNets.target_shared`) and backgrounds from [z ‖ 0]; codes are sampled with the
        generator `draws`, or are the means when it is None."""
        n = len(target)
        both = torch.cat([target, background]).contiguous(memory_format=self.layout)
        penalised = self.hparams.background_salient != "none"
        salient_mu, salient_logvar = self.nets.salient_encoder(both if penalised else both[:n])
        shared_mu, shared_logvar = self.nets.shared_encoder(both)
        shared_mu = torch.cat([self.nets.target_shared(shared_mu[:n], salient_mu[:n]),
                               shared_mu[n:]])
        salient = self._code(salient_mu, salient_logvar, draws)
        shared = self._code(shared_mu, shared_logvar, draws)
        slot = torch.cat([salient[:n], salient.new_zeros(n, self.nets.salient_dim)])
        reconstruction = self.nets.decoder(torch.cat([shared, slot], dim=1))
        return ForwardPass(n, salient_mu, salient_logvar, salient, shared_mu, shared_logvar, shared,
                    reconstruction)

    @torch.no_grad()
    def latent_representation(self, images: torch.Tensor, role: str | Sequence[str] = "target"
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Means of the shared [B, Z] and salient [B, S] codes of images [B, 1, X, Y, Z], read
        as `role` scans (`ContrastiveNets.code_means`)."""
        return self.nets.code_means(images.contiguous(memory_format=self.layout), role)

    # --- the loss -------------------------------------------------------------------------

    def terms(self, out: ForwardPass, target: torch.Tensor, background: torch.Tensor, *,
              training: bool = True, generator: torch.Generator | None = None
              ) -> dict[str, torch.Tensor]:
        """Every loss term of the forward pass `out` (scalars, batch means), unweighted; the
        decoder regulariser only in `training` (the gradient penalty draws from `generator`)."""
        tg, bg = slice(0, out.n), slice(out.n, 2 * out.n)
        images = torch.cat([target, background])
        if self.hparams.reconstruction == "calibrated":  # validation: each scan its own σ²
            alpha = losses.calibrated_alpha(out.reconstruction, images,
                                            per_sample=not training).detach()
        else:
            alpha = torch.tensor(float(self.hparams.alpha), device=images.device)
        per_sample = losses.reconstruction(out.reconstruction, images, alpha)
        if self.hparams.reconstruction == "calibrated":
            per_sample = per_sample + losses.calibration_log_term(alpha, images[0].numel())
        terms: dict[str, torch.Tensor] = {"rec_target": per_sample[tg].mean(),
                                          "rec_background": per_sample[bg].mean(),
                                          "alpha": alpha.mean()}
        terms["rec"] = (terms["rec_target"]
                        + self.hparams.background_weight * terms["rec_background"])
        parts = {"salient": (out.salient_mu[tg], rows_of(out.salient_logvar, tg), out.salient[tg]),
                 "shared_target": (out.shared_mu[tg], rows_of(out.shared_logvar, tg),
                                   out.shared[tg]),
                 "shared_background": (out.shared_mu[bg], rows_of(out.shared_logvar, bg),
                                       out.shared[bg])}
        for name, (mu, logvar, code) in parts.items():
            if self.stochastic:
                terms[f"kl_{name}"] = losses.kl_standard_normal(mu, logvar).mean()
            else:
                terms[f"code_{name}"] = losses.half_square_norm(code).mean()
        terms["prior"] = sum(terms[k] for k in terms if k.startswith(("kl_", "code_")))
        if self.discriminator is not None:
            terms["tc"] = self.discriminator.log_odds(out.joint).mean()
        if self.hparams.background_salient != "none":
            terms["background_salient"] = losses.background_salient(
                self.hparams.background_salient, out.salient_mu[bg],
                rows_of(out.salient_logvar, bg), out.salient[bg])
        if self.hparams.shared_mmd_weight:
            terms["shared_mmd"] = losses.mmd(out.shared[bg], out.shared[tg])
        if training and self.hparams.decoder_reg == "l2":
            terms["decoder_reg"] = losses.decoder_l2(self.nets.decoder)
        elif training and self.hparams.decoder_reg == "gp":
            terms["decoder_reg"] = losses.decoder_gradient_penalty(
                self.nets.decoder, torch.cat([out.shared[tg], out.salient[tg]], dim=1),
                generator=generator)
        return terms

    def total(self, terms: dict[str, torch.Tensor], beta: float, gamma: float) -> torch.Tensor:
        h = self.hparams
        loss = terms["rec"] + beta * terms["prior"]
        weighted = {"tc": gamma, "background_salient": h.background_salient_weight,
                    "shared_mmd": h.shared_mmd_weight, "decoder_reg": h.decoder_reg_weight}
        for key, weight in weighted.items():
            if key in terms and weight:
                loss = loss + weight * terms[key]
        return loss

    # --- schedules ------------------------------------------------------------------------

    def schedule_weights(self) -> tuple[float, float]:
        """(β, γ) at the current batch."""
        per_epoch = int(self.trainer.num_training_batches)
        epochs = self.trainer.max_epochs
        total = (per_epoch * epochs if epochs and epochs > 0
                 else int(self.trainer.estimated_stepping_batches))
        return (self.beta(self.batches_seen, per_epoch, total),
                self.gamma(self.batches_seen, per_epoch, total))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The batch counter, D's accuracy history and the epoch's running sums: the same on
        every rank, so rank 0's copy serves all on resume."""
        checkpoint["batches_seen"] = self.batches_seen
        checkpoint["discriminator_accuracy"] = list(self.watch.history)
        checkpoint["epoch_sums"] = {"epoch": self.epoch_of_sums, "batches": self.epoch_batches,
                                    "sums": {k: v.cpu() for k, v in self.epoch_sums.items()}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.batches_seen = int(checkpoint.get("batches_seen", 0))
        self.watch.history = list(checkpoint.get("discriminator_accuracy", []))
        running = checkpoint.get("epoch_sums", {})
        self.epoch_of_sums = running.get("epoch", -1)
        self.epoch_batches = running.get("batches", 0)
        self.epoch_sums = dict(running.get("sums", {}))

    # --- training -------------------------------------------------------------------------

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = [self.optimizer(self.nets.parameters())]
        if self.discriminator is not None:
            factory = self.discriminator_optimizer or self.optimizer
            optimizers.append(factory(self.discriminator.parameters()))
        return optimizers

    def _step(self, optimizer: Any, loss: torch.Tensor, what: str,
              terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Backward, check, clip and step one optimiser; returns the gradient norm."""
        # every rank takes the same decision (the losses differ, the reduced gradients do not)
        if not self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss))):
            self._diverged(f"the {what} loss is {loss.item()} (on at least one rank)", terms)
        optimizer.zero_grad()
        self.manual_backward(loss)
        params = [p for group in optimizer.param_groups for p in group["params"]
                  if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if not torch.isfinite(norm):
            self._diverged(f"the {what} gradient norm is {norm.item()}", terms)
        if self.hparams.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip,
                                gradient_clip_algorithm="norm")
        optimizer.step()
        return norm

    def _diverged(self, problem: str, terms: dict[str, torch.Tensor]) -> None:
        values = ", ".join(f"{k} {v.item():.4g}" for k, v in terms.items())
        raise TrainingDiverged(
            f"training diverged at batch {self.batches_seen} (epoch {self.current_epoch}): "
            f"{problem} ({values}). The weights were not updated with it; the last checkpoint "
            "holds the last good state. Lower the learning rate, set gradient_clip, or lower "
            "γ / the penalty weights.")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        target, background = batch["target"]["image"], batch["background"]["image"]
        optimizers = self.optimizers()
        model_opt, *disc_opt = optimizers if isinstance(optimizers, list) else [optimizers]
        beta, gamma = self.schedule_weights()
        draws = self.generator()
        with self.toggled_optimizer(model_opt):
            out = self.forward_pass(target, background, draws=draws)
            terms = self.terms(out, target, background, generator=draws)
            terms["loss"] = self.total(terms, beta, gamma)
            grad_norm = self._step(model_opt, terms["loss"], "model", terms)
        logs = {**terms, "beta": beta, "gamma": gamma, "grad_norm": grad_norm}
        if self.discriminator is not None:
            joint = out.joint.detach()
            product = product_of_marginals(out.shared[:out.n].detach(),
                                           out.salient[:out.n].detach(), self.hparams.product,
                                           generator=draws)
            with self.toggled_optimizer(disc_opt[0]):
                logs["disc_loss"] = self.discriminator.loss(joint, product)
                self._step(disc_opt[0], logs["disc_loss"], "discriminator", terms)
            logs |= self._accuracy(joint, product)
        self.batches_seen += 1
        self._log_training(logs)

    def _log_training(self, logs: dict[str, Any]) -> None:
        """Log this step's values, averaged over ranks, and add them to the epoch's sums."""
        names = sorted(logs)
        values = torch.stack([torch.as_tensor(logs[k], dtype=torch.float32, device=self.device)
                              .detach() for k in names])
        values = self.trainer.strategy.reduce(values, reduce_op="mean")
        if self.epoch_of_sums != self.current_epoch:  # a new epoch (or sums of a past one)
            self.epoch_sums, self.epoch_batches = {}, 0
            self.epoch_of_sums = self.current_epoch
        for name, value in zip(names, values, strict=True):
            total = self.epoch_sums.get(name, torch.zeros((), dtype=torch.float64))
            self.epoch_sums[name] = total.to(value.device) + value.to(torch.float64)
        self.epoch_batches += 1
        self.log_dict({f"train/{k}_step": v for k, v in zip(names, values, strict=True)},
                      on_step=True, on_epoch=False)

    def _accuracy(self, joint: torch.Tensor, product: torch.Tensor) -> dict[str, float]:
        on_joint, on_product = self.discriminator.accuracy(joint, product)
        return {"disc_acc_joint": on_joint, "disc_acc_product": on_product,
                "disc_acc": (on_joint + on_product) / 2}

    def on_train_epoch_end(self) -> None:
        """Log the epoch means of the training values (straight to the loggers, so they are on
        disk before the epoch's checkpoint); warn when D is stuck (rank 0)."""
        if self.epoch_of_sums != self.current_epoch or not self.epoch_batches:
            return
        means = {k: float(v) / self.epoch_batches for k, v in self.epoch_sums.items()}
        row = {f"train/{k}_epoch": v for k, v in means.items()} | {"epoch": self.current_epoch}
        for logger in self.loggers:
            logger.log_metrics(row, step=self.batches_seen - 1)
        if "disc_acc" in means:
            self.watch.update(self.current_epoch, means["disc_acc"],
                              warn=self.trainer.is_global_zero)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Every term at the code means, with fixed weights (β = 1): `val/rec` moves with the
        model only."""
        target, background = batch["target"]["image"], batch["background"]["image"]
        out = self.forward_pass(target, background, draws=None)
        terms = self.terms(out, target, background, training=False)
        if self.discriminator is not None:
            product = product_of_marginals(out.shared[:out.n], out.salient[:out.n],
                                           self.hparams.product,
                                           generator=self.generator(batch_idx))
            terms["disc_loss"] = self.discriminator.loss(out.joint, product)
            terms |= {k: torch.tensor(v) for k, v in self._accuracy(out.joint, product).items()}
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, on_epoch=True, batch_size=out.n,
                      sync_dist=True)
