"""Contrastive training speed and peak memory: the efficient default nets against the original
`original_asd` nets, at the same input size, side by side in one run.

    .venv/bin/python experiments/bench_train.py   # writes experiments/results/bench_train.md

Each measurement is the real training step of `ContrastiveModule` (model step + discriminator
step, manual optimisation) under a Lightning Trainer, on random volumes held in memory, with the
default `neurocvae-train` settings and only `arch` changed. One worker process per setting, so
the peak memory (CPU: max resident set; GPU: max allocated) is that setting's own. The first
`WARMUP` batches are not timed. CPU: 80×96×80 (2 mm), batch 2 + 2. GPU (when present):
160×192×160 at 32-true and bf16-mixed, batch 4 + 4.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULT = Path(__file__).parent / "results" / "bench_train.md"
WARMUP, TIMED = 2, 5


def worker(arch: str, shape: list[int], batch: int, precision: str) -> dict:
    """Train `WARMUP + TIMED` batches; samples (targets + backgrounds) per second, memory."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir
    from torch.utils.data import DataLoader

    from neurocvae.config import config_dir
    from neurocvae.contrastive.build import build_module

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", [f"arch={arch}", "data.target=t", "data.background=b"])
    module = build_module(cfg, shape)
    items = [{role: {"image": torch.rand(1, *shape)} for role in ("target", "background")}
             for _ in range(batch)]
    loader = DataLoader(items * (WARMUP + TIMED), batch_size=batch)
    times: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, *args) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, callbacks=[Clock()], precision=precision,
               limit_val_batches=0).fit(module, loader)
    seconds = sum(times[WARMUP:]) / TIMED
    gpu = torch.cuda.is_available()
    memory = (torch.cuda.max_memory_allocated() / 2**30 if gpu
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"arch": arch, "parameters": sum(p.numel() for p in module.nets.parameters()),
            "samples_per_s": 2 * batch / seconds, "seconds_per_batch": seconds,
            "peak_gib": memory}


def measure(arch: str, shape: list[int], batch: int, precision: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", arch, json.dumps(shape),
                          str(batch), precision], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    gpu = torch.cuda.is_available()
    settings = ([([160, 192, 160], 4, p) for p in ("32-true", "bf16-mixed")] if gpu
                else [([80, 96, 80], 2, "32-true")])
    device = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    lines = ["# Contrastive training: efficient vs original_asd nets", "",
             f"`{' '.join(sys.argv)}` · {device} · torch {torch.__version__} · "
             f"{platform.python_version()}", "",
             f"Real training steps (model + discriminator) of `ContrastiveModule`, default "
             f"settings, mean of {TIMED} batches after {WARMUP} warm-up batches; samples = "
             "targets + backgrounds. Peak memory: " +
             ("max allocated GPU memory." if gpu else "max resident set of the process."), "",
             "| input | batch | precision | arch | parameters | samples/s | s/batch | peak GiB |"
             " speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for shape, batch, precision in settings:
        rows = {arch: measure(arch, shape, batch, precision) for arch in ("original_asd",
                                                                          "efficient")}
        for arch, row in rows.items():
            ratio = row["samples_per_s"] / rows["original_asd"]["samples_per_s"]
            lines.append(f"| {'×'.join(map(str, shape))} | {batch} + {batch} | {precision} | "
                         f"{arch} | {row['parameters']:,} | {row['samples_per_s']:.2f} | "
                         f"{row['seconds_per_batch']:.2f} | {row['peak_gib']:.2f} | "
                         f"{ratio:.2f}× |")
            print(lines[-1], flush=True)
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n")
    print(f"→ {RESULT}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]),
                                sys.argv[5])))
    else:
        main()
