"""What the `neurocvae-train` tests share: two tiny sets on disk, tiny-model overrides, and a
reader of offline W&B runs."""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2

from tests.data.conftest import SHAPE, write_cohort

TINY = ["arch.channels=[4,8]", "arch.hidden=16", "arch.bottleneck_channels=null",
        "shared_dim=3", "salient_dim=2",
        "data.preprocessing.shape=[16,16,16]", "data.batch_size=4", "data.num_workers=0",
        "data.cache_workers=0", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "data.split_fractions={train:0.75,val:0.25}"]
TRAIN_COMMAND = Path(sys.executable).with_name("neurocvae-train")


def write_sets(folder: Path, shape: tuple[int, ...] = SHAPE) -> tuple[Path, Path]:
    """16 targets (three patient groups) and 16 background controls with volumes of `shape`."""
    write_cohort(folder, ["MDD", "diabetes", "dual", "dual"] * 4, shape=shape).to_csv(
        folder / "target.csv", index=False)
    write_cohort(folder, ["HC"] * 16, start=16, shape=shape).to_csv(folder / "background.csv",
                                                                    index=False)
    return folder / "target.csv", folder / "background.csv"


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    """`write_sets` with 12×14×10 volumes."""
    return write_sets(tmp_path_factory.mktemp("sets"))


def overrides(sets, out_dir: Path | None, *extra: str) -> list[str]:
    """TINY on `sets`, written to `out_dir` (None: the folder Hydra chooses)."""
    target, background = sets
    folder = [f"out_dir={out_dir}"] if out_dir else []
    return [*TINY, f"data.target={target}", f"data.background={background}",
            f"data.cache_dir={target.parent / 'cache'}", *folder, *extra]


BLOCK = 32768  # the .wandb file is a LevelDB-style log of protobuf records in 32 KiB blocks


def wandb_records(path: Path, timeout_s: float = 60.0) -> list[wandb_internal_pb2.Record]:
    """The records of a finished offline W&B run's `run-<id>.wandb` file. W&B's service writes
    the file on its own after `run.finish()` returns, so this waits until the run's `exit`
    record is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            records = read_records(path)
            if any(r.WhichOneof("record_type") == "exit" for r in records):
                return records
        except DecodeError:  # a record being written
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has no exit record after {timeout_s:.0f} s")
        time.sleep(0.2)


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """The records in a `run-<id>.wandb` file as it stands."""
    data, records, pos, pending = path.read_bytes(), [], 7, b""  # 7: the file's W&B header
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # block trailer or padding
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_runs(out_dir: Path) -> list[Path]:
    """The offline W&B runs written in a run folder, oldest first."""
    return sorted((out_dir / "wandb").glob("offline-run-*"))
