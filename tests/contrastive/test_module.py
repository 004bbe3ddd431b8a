"""The LightningModule on in-memory batches: the two optimisers keep to their own parameters,
backgrounds never see a salient code, schedules resume where they stopped, NaN stops training."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from neurocvae.contrastive.build import build_module, load_module, module_from
from neurocvae.errors import InputError, TrainingDiverged
from neurocvae.runs import draw_seed
from tests.conftest import compose_config

SHAPE = (12, 12, 12)
TINY = ["arch.channels=[4,8]", "arch.hidden=16", "arch.bottleneck_channels=null",
        "shared_dim=3", "salient_dim=2", "discriminator.hidden=[8]", "data.target=t",
        "data.background=b"]


def module(*overrides: str):
    return build_module(compose_config("train", [*TINY, *overrides]), SHAPE)


def batches(n_batches: int = 4, size: int = 4, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    items = [{role: {"image": torch.rand(1, *SHAPE, generator=generator)}
              for role in ("target", "background")} for _ in range(n_batches * size)]
    return DataLoader(items, batch_size=size)


def trainer(tmp_path, epochs: int = 1, callbacks=(), **kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, default_root_dir=tmp_path, logger=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=list(callbacks), **kwargs)


def test_a_perfect_reconstruction_scores_zero_against_its_own_set():
    model = module("model.reconstruction=fixed")
    target, background = torch.rand(2, 1, *SHAPE), torch.rand(2, 1, *SHAPE)
    p = model.forward_pass(target, background, draws=None)
    p.reconstruction = torch.cat([target, background])
    terms = model.terms(p, target, background)
    assert terms["rec_target"] == 0 and terms["rec_background"] == 0
    p.reconstruction = torch.cat([background, target])  # the original's bug: x̂_tg vs x_bg
    assert model.terms(p, target, background)["rec_target"] > 0


def test_the_calibrated_decoder_weighs_errors_by_the_batch_error():
    """α = N_vox / (2σ²) with σ² the batch's mean squared error: a tenth of the error is
    weighed a hundred times more, and scoring against the other set costs more."""
    model = module()  # the default: reconstruction=calibrated
    target, background = torch.rand(2, 1, *SHAPE), torch.rand(2, 1, *SHAPE)
    p = model.forward_pass(target, background, draws=None)
    alphas, recs = [], []
    for error in (0.1, 0.01):
        p.reconstruction = torch.cat([target, background]) + error
        terms = model.terms(p, target, background)
        alphas.append(float(terms["alpha"]))
        recs.append(float(terms["rec_target"]))
    assert alphas[1] / alphas[0] == pytest.approx(100, rel=1e-3)
    assert recs[1] < recs[0]
    p.reconstruction = torch.cat([background, target])
    assert model.terms(p, target, background)["rec_target"] > recs[0]


def test_validation_scores_do_not_depend_on_how_scans_are_batched():
    """Each scan gets its own σ² in validation: the mean over scans is the same whether they
    come in one batch or two (DDP shards the validation split across ranks)."""
    model = module().eval()
    target, background = torch.rand(4, 1, *SHAPE), torch.rand(4, 1, *SHAPE)

    def rec(rows: slice) -> torch.Tensor:
        p = model.forward_pass(target[rows], background[rows], draws=None)
        return model.terms(p, target[rows], background[rows], training=False)["rec"]

    whole = rec(slice(0, 4))
    assert torch.isclose(whole, (rec(slice(0, 2)) + rec(slice(2, 4))) / 2, rtol=1e-5)


class Snapshot(pl.Callback):
    """Parameters of the model and of the discriminator around one training batch."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before = {k: v.clone() for k, v in module.state_dict().items()}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.after = module.state_dict()


def test_each_optimiser_moves_only_its_own_parameters(tmp_path):
    model, snapshot = module(), Snapshot()
    model.discriminator_optimizer = None  # the steps below patch one optimiser at a time

    def frozen(part):
        return {k: v for k, v in snapshot.before.items() if k.startswith(part)}

    class DiscriminatorStepSkipped(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            trainer.optimizers[1].step = lambda *a, **k: None

    trainer(tmp_path, callbacks=[snapshot, DiscriminatorStepSkipped()], limit_train_batches=1,
            limit_val_batches=0).fit(model, batches())
    assert all(torch.equal(v, snapshot.after[k]) for k, v in frozen("discriminator").items())
    assert any(not torch.equal(v, snapshot.after[k]) for k, v in frozen("nets").items())

    model, snapshot = module(), Snapshot()

    class ModelStepSkipped(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            trainer.optimizers[0].step = lambda *a, **k: None

    trainer(tmp_path, callbacks=[snapshot, ModelStepSkipped()], limit_train_batches=1,
            limit_val_batches=0).fit(model, batches())
    assert all(torch.equal(v, snapshot.after[k]) for k, v in frozen("nets").items()
               if "running" not in k and "num_batches" not in k)
    assert any(not torch.equal(v, snapshot.after[k]) for k, v in frozen("discriminator").items())


@pytest.mark.parametrize("penalty", ["none", "w2"])
def test_background_reconstructions_never_see_a_salient_code(tmp_path, penalty):
    model = module(f"model.background_salient={penalty}", "model.background_salient_weight=1")
    inputs = []
    model.nets.decoder.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach()))
    trainer(tmp_path, limit_train_batches=2, limit_val_batches=1).fit(model, batches(),
                                                                      batches(seed=1))
    assert len(inputs) >= 3
    for codes in inputs:  # rows: 4 targets, then 4 backgrounds; columns: [z ‖ s]
        assert (codes[4:, 3:] == 0).all() and (codes[:4, 3:] != 0).any()


class Weights(pl.Callback):
    """β and γ as the module computes them, per batch."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.append((module.batches_seen, *module.schedule_weights()))


class StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = True


def test_a_resumed_run_continues_the_beta_schedule(tmp_path):
    overrides = ("beta=cyclical", "beta.cycles=2", "gamma=warmup", "gamma.length=6")
    whole = Weights()
    pl.seed_everything(0)
    trainer(tmp_path / "whole", epochs=3, callbacks=[whole]).fit(module(*overrides), batches())
    assert len(whole.seen) == 12 and whole.seen[0][1] == 0
    assert len({beta for _, beta, _ in whole.seen}) > 3

    first, second = Weights(), Weights()
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path / "part", epochs=3, callbacks=[first, checkpoints, StopAfterFirstEpoch()]
            ).fit(module(*overrides), batches())
    assert len(first.seen) == 4
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["batches_seen"] == 4
    trainer(tmp_path / "part", epochs=3, callbacks=[second]).fit(
        module(*overrides), batches(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert first.seen + second.seen == whole.seen


class PoisonAt(pl.Callback):
    def __init__(self, batch):
        self.batch = batch

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if module.batches_seen == self.batch:
            with torch.no_grad():
                next(module.nets.decoder.parameters()).fill_(float("nan"))


def test_a_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    with pytest.raises(TrainingDiverged, match=r"at batch 6 \(epoch 1\): the model loss is nan"):
        trainer(tmp_path, epochs=3, callbacks=[checkpoints, PoisonAt(6)]).fit(module(),
                                                                             batches())
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0 and state["batches_seen"] == 4
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values()
               if v.is_floating_point())
    restored = load_module(tmp_path / "last.ckpt")
    assert restored.batches_seen == 4 and not restored.training


def test_rae_codes_are_deterministic_and_regularised(tmp_path):
    model = module("latent=deterministic")
    target = torch.rand(4, 1, *SHAPE)
    p = model.forward_pass(target, target, draws=model.generator())
    assert p.salient_logvar is None and torch.equal(p.salient, p.salient_mu)
    terms = model.terms(p, target, target)
    assert {"code_salient", "code_shared_target", "code_shared_background",
            "decoder_reg"} <= set(terms) and not any(k.startswith("kl_") for k in terms)
    trainer(tmp_path, limit_train_batches=2, limit_val_batches=1).fit(model, batches(),
                                                                      batches(seed=1))


def test_random_draws_differ_between_ranks_and_batches_and_repeat_on_resume():
    seeds = {(rank, batch): draw_seed(42, rank, batch) for rank in range(4)
             for batch in range(50)}
    assert len(set(seeds.values())) == len(seeds)
    assert draw_seed(42, 1, 7) == seeds[1, 7] and draw_seed(43, 1, 7) != seeds[1, 7]
    permutations = {rank: torch.randperm(8, generator=torch.Generator().manual_seed(
        draw_seed(42, rank, 0))).tolist() for rank in range(4)}
    assert len({tuple(p) for p in permutations.values()}) == 4  # each rank permutes its own way


def test_a_checkpoint_another_version_wrote_is_refused_with_its_name():
    model = module()
    state = {"hyper_parameters": {"config": model.hparams.config},
             "state_dict": model.state_dict()}
    assert isinstance(module_from(state), type(model))
    unknown = {**state, "hyper_parameters": {"config": {
        **model.hparams.config, "arch": {**model.hparams.config["arch"], "newer_option": True}}}}
    with pytest.raises(InputError, match=r"old\.ckpt: this version .*newer_option"):
        module_from(unknown, "old.ckpt")
    weights = dict(state["state_dict"])
    weights.pop(next(iter(weights)))
    with pytest.raises(InputError, match=r"old\.ckpt: .*Missing key"):
        module_from({**state, "state_dict": weights}, "old.ckpt")


def test_a_checkpoint_from_before_the_shared_projection_option_loads_with_its_coarse_grid():
    """Checkpoints written before `arch.shared_projection` hold a shared projection on the
    coarse `projection_voxels` grid; their config lacks the key, which reads as "coarse"."""
    old = module("arch.projection_voxels=216", "arch.shared_projection=coarse")
    config = {**old.hparams.config, "arch": {
        k: v for k, v in old.hparams.config["arch"].items() if k != "shared_projection"}}
    loaded = module_from({"hyper_parameters": {"config": config},
                          "state_dict": old.state_dict()})
    assert loaded.nets.shared_encoder.linear.stride == loaded.nets.projection_stride == 2
    assert module("arch.projection_voxels=216").nets.shared_encoder.linear.stride == 1
