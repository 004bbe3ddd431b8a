"""A trained contrastive model as one object, for notebooks and `neurocvae-encode`.

It reads new scans exactly as training did (the run's preprocessing, the cache's float16
rounding, the fitted intensity scaling: all stored in the checkpoint, so a checkpoint copied
alone works), encodes them, decodes them, and gives salient maps in the model's grid or
resampled back to each scan's own grid and affine.

    from neurocvae import TrainedModel
    model = TrainedModel.load("outputs/train/<run_id>")   # a run folder or a checkpoint file
    codes = model.encode("replication/manifest.csv")      # table columns + shared_…, salient_…
    maps = model.salient_maps(codes.path[:3], native=True)  # nibabel images, one per scan

Inputs (`scans`, `neurocvae.data.scans`): a cohort table (CSV path or DataFrame with a `path`
column; other columns are kept), a folder of NIfTI files, or a list of NIfTI paths. Volumes
are float32 [X, Y, Z] in the model's input intensity units (after scaling); maps are
D([z, s]) − D([z, 0]) in those units.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from neurocvae.contrastive.build import module_from, read_checkpoint
from neurocvae.contrastive.export import OUTPUTS, CodeMeans
from neurocvae.contrastive.latents import encode_batches
from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.data.export import export_onnx
from neurocvae.data.scans import ScanReader, Scans, scans_table
from neurocvae.data.volumes import Preprocessing
from neurocvae.errors import InputError
from neurocvae.files import run_checkpoint, write_text_atomically

log = logging.getLogger(__name__)
KINDS = ("reconstruction", "counterfactual", "salient_map")


@dataclass
class TrainedModel:
    """A `neurocvae-train` model with what it needs to read scans it has never seen.

    module: the trained `ContrastiveModule` (eval mode); reader: how its run read volumes
    (`ScanReader`: preprocessing, intensity scaling, input grid); checkpoint: where it was
    loaded from.
    """

    module: ContrastiveModule
    reader: ScanReader
    checkpoint: Path

    @classmethod
    def load(cls, source: str | Path, *, checkpoint: str = "best",
             device: str | torch.device = "cpu", batch_size: int = 8) -> TrainedModel:
        """Load a run folder (its `checkpoint`: best, last or a path) or a checkpoint file."""
        source = Path(source)
        path = run_checkpoint(source, checkpoint) if source.is_dir() else source
        state = read_checkpoint(path)
        module = module_from(state, path).to(device)
        reader = ScanReader.from_state(state.get("ContrastiveDataModule"), path,
                                       shape=module.nets.input_shape, batch_size=batch_size)
        return cls(module=module, reader=reader, checkpoint=path)

    @property
    def preprocessing(self) -> Preprocessing:
        """The run's preprocessing: `model.preprocessing(path)` is a volume [1, X, Y, Z]."""
        return self.reader.preprocessing

    @property
    def affine(self) -> np.ndarray:
        """[4, 4] voxel-to-mm (RAS) affine of the model's input grid."""
        return self.reader.affine

    @property
    def shape(self) -> tuple[int, int, int]:
        """[X, Y, Z] of the model's inputs."""
        return self.reader.shape

    # --- codes and images ---------------------------------------------------------------------

    def encode(self, scans: Scans) -> pd.DataFrame:
        """One row per scan: the table's columns, then the means of the shared (`shared_0…`)
        and salient (`salient_0…`) codes, each scan read as its `role` column says, or as a
        target (one that may carry the pattern) without one (`ContrastiveNets.code_means`)."""
        table = scans_table(scans)
        _, codes = encode_batches(self.module, self.reader.batches(table, "encoding"))
        return pd.concat([table, codes], axis=1)

    @torch.no_grad()
    def volumes(self, scans: Scans, kind: str = "salient_map", *, native: bool = False
                ) -> Iterator[tuple[pd.Series, nib.Nifti1Image]]:
        """(table row, image) per scan, one at a time: the `reconstruction` D([z, s]), the
        healthy `counterfactual` D([z, 0]) or the `salient_map` D([z, s]) − D([z, 0]), at the
        code means, in the model's grid or, with `native`, resampled (trilinear) to the scan's
        own file grid and affine."""
        if kind not in KINDS:
            raise InputError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")
        table = scans_table(scans)
        rows = table.iterrows()
        for batch in self.reader.batches(table, f"decoding ({kind})"):
            decoded = self._decode(batch["image"], batch["role"], kind)
            for volume, affine in zip(decoded, batch["affine"], strict=True):
                _, row = next(rows)
                image = nib.Nifti1Image(volume, affine)
                yield row, (to_native(image, row["path"]) if native else image)

    def _decode(self, images: torch.Tensor, roles: list[str], kind: str) -> np.ndarray:
        """[B, X, Y, Z] float32 decoded volumes of model inputs [B, 1, X, Y, Z], each read as
        its role's scan."""
        nets = self.module.nets
        shared, salient = self.module.latent_representation(images.to(self.module.device),
                                                            roles)
        if kind == "reconstruction":
            out = nets.decode(shared, salient)
        elif kind == "counterfactual":
            out = nets.decode(shared)
        else:
            out = nets.decode(shared, salient) - nets.decode(shared)
        return out[:, 0].float().cpu().numpy()

    def reconstruct(self, scans: Scans, *, native: bool = False) -> list[nib.Nifti1Image]:
        """D([z, s]) of each scan (`volumes`)."""
        return [image for _, image in self.volumes(scans, "reconstruction", native=native)]

    def counterfactual(self, scans: Scans, *, native: bool = False) -> list[nib.Nifti1Image]:
        """D([z, 0]), each scan as if healthy (`volumes`)."""
        return [image for _, image in self.volumes(scans, "counterfactual", native=native)]

    def salient_maps(self, scans: Scans, *, native: bool = False) -> list[nib.Nifti1Image]:
        """D([z, s]) − D([z, 0]), each scan's salient pattern (`volumes`)."""
        return [image for _, image in self.volumes(scans, "salient_map", native=native)]

    def export(self, path: str | Path) -> Path:
        """The encoders as ONNX at `path`: preprocessed volumes (`model.preprocessing(path)`,
        [B, 1, X, Y, Z]) in, code means `shared` and `salient` out (`neurocvae.data.export`)."""
        return export_onnx(CodeMeans(self.module, self.reader.minmax), self.shape, OUTPUTS, path)


def to_native(image: nib.Nifti1Image, path: str | Path) -> nib.Nifti1Image:
    """`image` resampled (trilinear, zero outside) to the grid and affine of the file at
    `path`."""
    from nilearn.image import resample_to_img

    source = nib.load(str(path))
    return resample_to_img(image, source, interpolation="continuous", force_resample=True,
                           copy_header=True)


def write_volumes(items: Iterable[tuple[pd.Series, nib.Nifti1Image]], out_dir: Path,
                  kind: str) -> list[Path]:
    """Save each (row, image) as `<out_dir>/<subject_id>_<kind>.nii.gz`; the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for row, image in items:
        path = out_dir / f"{str(row['subject_id']).replace('/', '_')}_{kind}.nii.gz"
        nib.save(image, path)
        written.append(path)
    return written


def write_encoding(model: TrainedModel, scans: Scans, out_dir: str | Path, *,
                   maps: Sequence[str] = ("salient_map",), native: bool = False) -> pd.DataFrame:
    """What `neurocvae-encode` writes into `out_dir`: `latents.csv` (`TrainedModel.encode`) and,
    for each kind of `maps`, `<kind>/<subject_id>_<kind>.nii.gz` (`TrainedModel.volumes`).
    Each appears only when complete (written aside, then renamed); returns the codes."""
    unknown = [kind for kind in maps if kind not in KINDS]
    if unknown:
        raise InputError(f"maps={list(maps)}: unknown {unknown}; expected any of "
                         f"{', '.join(KINDS)}")
    table = scans_table(scans)  # every file checked before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = model.encode(table)
    for kind in maps:
        partial = out_dir / f".{kind}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        write_volumes(model.volumes(table, kind, native=native), partial, kind)
        shutil.rmtree(out_dir / kind, ignore_errors=True)
        os.replace(partial, out_dir / kind)
    write_text_atomically(out_dir / "latents.csv", codes.to_csv(index=False))
    log.info("%d scan(s) encoded: %s%s", len(table), out_dir / "latents.csv",
             "".join(f", {out_dir / kind}/" for kind in maps))
    return codes
