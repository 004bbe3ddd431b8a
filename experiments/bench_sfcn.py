"""SFCN speed, side by side in one run: inference at its full input size (160×192×160), and
training at 2 mm (80×96×80).

    .venv/bin/python experiments/bench_sfcn.py   # writes experiments/results/bench_sfcn.md

The published brain-age SFCN (2,952,936 parameters), eval mode, under `torch.inference_mode`,
on random volumes; batch 1 and batch 4, in the default (contiguous) and the channels-last 3-D
memory layout. Training: forward, KL loss, backward and an Adam step at batch 4, both layouts.
On a CUDA device it also measures bf16 autocast. Each setting: one warm-up pass, then `REPEATS`
timed passes.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

from neurocvae.brainage.bins import AgeBins, kl_loss
from neurocvae.brainage.sfcn import SFCN

RESULT = Path(__file__).parent / "results" / "bench_sfcn.md"
SHAPE = (160, 192, 160)
TRAIN_SHAPE, TRAIN_BATCH = (80, 96, 80), 4
REPEATS = 3


def timed(step, device: str) -> float:
    """Seconds per call of `step` after one warm-up call."""
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(REPEATS):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / REPEATS


def volumes_per_second(model: torch.nn.Module, batch: int, *, device: str,
                       channels_last: bool, bf16: bool, train: bool = False) -> float:
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=layout).train(train)
    x = torch.randn(batch, 1, *(TRAIN_SHAPE if train else SHAPE), device=device)
    x = x.contiguous(memory_format=layout)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)
    labels = AgeBins().soft_labels(torch.full((batch,), 60.0, device=device))
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)

    def step() -> None:
        if not train:
            with torch.inference_mode(), autocast:
                model(x)
            return
        with autocast:
            loss = kl_loss(model(x).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return batch / timed(step, device)


def main() -> None:
    model = SFCN().eval()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows, training = [], []
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else (
            f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)")
        for bf16 in ([False, True] if device == "cuda" else [False]):
            for channels_last in (False, True):
                rates = [volumes_per_second(model, b, device=device, bf16=bf16,
                                            channels_last=channels_last) for b in (1, 4)]
                rows.append(f"| {name} | {'bf16 autocast' if bf16 else 'float32'} | "
                            f"{'channels-last 3-D' if channels_last else 'contiguous'} | "
                            f"{rates[0]:.2f} | {rates[1]:.2f} | {rates[1] / rates[0]:.2f}× |")
                print(rows[-1], flush=True)
                train = volumes_per_second(SFCN(), TRAIN_BATCH, device=device, bf16=bf16,
                                           channels_last=channels_last, train=True)
                training.append(f"| {name} | {'bf16 autocast' if bf16 else 'float32'} | "
                                f"{'channels-last 3-D' if channels_last else 'contiguous'} | "
                                f"{train:.2f} |")
                print(training[-1], flush=True)
    text = "\n".join([
        "# SFCN speed", "", "## Inference at 160×192×160", "",
        f"`python experiments/bench_sfcn.py`, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}. Published brain-age SFCN (2,952,936 parameters), eval "
        f"mode, `torch.inference_mode`, random input; one warm-up pass, {REPEATS} timed.", "",
        "| device | precision | memory layout | batch 1 vol/s | batch 4 vol/s | batch 4 ÷ 1 |",
        "|---|---|---|---|---|---|", *rows, "",
        f"## Training at {'×'.join(map(str, TRAIN_SHAPE))}, batch {TRAIN_BATCH}", "",
        "Forward, KL loss on soft labels, backward, Adam step; train mode.", "",
        "| device | precision | memory layout | vol/s |", "|---|---|---|---|", *training, ""])
    RESULT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
