"""Why the small SFCN's validation MAE jumps between epochs: BatchNorm running statistics.

    .venv/bin/python experiments/bn_probe.py   # after `make demo`; writes results/bn_probe.md

Trains the demo's quarter-width SFCN (Adam 1e-3, batch 8, the demo's splits and cache) and, after
every epoch, measures the validation MAE twice: with BatchNorm's running statistics (what eval
mode uses) and with statistics recomputed over one pass of the training set ("precise BN").
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from neurocvae.brainage.bins import AgeBins, kl_loss
from neurocvae.brainage.sfcn import SFCN
from neurocvae.data.datamodules import BrainAgeDataModule

DEMO = Path("outputs/demo")
RESULT = Path(__file__).parent / "results" / "bn_probe.md"
EPOCHS = 18


def main() -> None:
    torch.manual_seed(0)
    dm = BrainAgeDataModule(str(DEMO / "cohort" / "manifest.csv"), cache_dir=str(DEMO / "cache"),
                            preprocessing={"shape": [40, 48, 40]}, batch_size=8, num_workers=0,
                            split_fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    dm.prepare_data()
    dm.setup("fit")
    bins = AgeBins()
    train = [dm.on_after_batch_transfer(b, 0) for b in dm.train_dataloader()]
    val = [dm.on_after_batch_transfer(b, 0) for b in dm.val_dataloader()]

    def mae(net: torch.nn.Module) -> float:
        net.eval()
        with torch.no_grad():
            return torch.cat([(bins.expected_age(net(b["image"])) - b["age"]).abs()
                              for b in val]).mean().item()

    net = SFCN(channels=[8, 16, 32, 64, 64, 32])
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    rows = []
    for epoch in range(EPOCHS):
        net.train()
        for b in train:
            loss = kl_loss(net(b["image"]), bins.soft_labels(b["age"]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        probe = copy.deepcopy(net)
        for module in probe.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the pass
        probe.train()
        with torch.no_grad():
            for b in train:
                probe(b["image"])
        rows.append(f"| {epoch} | {mae(net):.2f} | {mae(probe):.2f} |")
        print(rows[-1], flush=True)
    RESULT.write_text("\n".join([
        "# Validation MAE: BatchNorm running statistics against recomputed statistics", "",
        f"`python experiments/bn_probe.py` after `make demo`, {time.strftime('%Y-%m-%d')}: "
        f"quarter-width SFCN, Adam 1e-3, batch 8, {len(train) * 8} training controls, "
        f"{sum(len(b['age']) for b in val)} validation controls, 4 mm.", "",
        "| epoch | val MAE, running statistics (y) | val MAE, recomputed statistics (y) |",
        "|---|---|---|", *rows, ""]))


if __name__ == "__main__":
    main()
