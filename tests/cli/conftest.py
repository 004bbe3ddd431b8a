"""What the `neurocvae-train` tests share: two tiny sets on disk and tiny-model overrides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.data.conftest import write_cohort

TINY = ["arch.channels=[4,8]", "arch.hidden=16", "arch.bottleneck_channels=null",
        "shared_dim=3", "salient_dim=2",
        "data.preprocessing.shape=[16,16,16]", "data.batch_size=4", "data.num_workers=0",
        "data.cache_workers=0", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "data.split_fractions={train:0.75,val:0.25}"]
TRAIN_COMMAND = Path(sys.executable).with_name("neurocvae-train")


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    """16 targets (three patient groups) and 16 background controls, 12×14×10 volumes."""
    folder = tmp_path_factory.mktemp("sets")
    write_cohort(folder, ["MDD", "diabetes", "dual", "dual"] * 4).to_csv(folder / "target.csv",
                                                                         index=False)
    write_cohort(folder, ["HC"] * 16, start=16).to_csv(folder / "background.csv", index=False)
    return folder / "target.csv", folder / "background.csv"


def overrides(sets, out_dir: Path | None, *extra: str) -> list[str]:
    """TINY on `sets`, written to `out_dir` (None: the folder Hydra chooses)."""
    target, background = sets
    folder = [f"out_dir={out_dir}"] if out_dir else []
    return [*TINY, f"data.target={target}", f"data.background={background}",
            f"data.cache_dir={target.parent / 'cache'}", *folder, *extra]
