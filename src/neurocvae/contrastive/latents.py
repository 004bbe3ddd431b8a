"""Latent codes of a trained contrastive model for the scans of a split."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch

from neurocvae.contrastive.module import ContrastiveModule
from neurocvae.data.datamodules import ContrastiveDataModule

COLUMNS = ("subject_id", "group", "age", "sex", "site", "brain_age", "bag")  # kept when present


def known_columns(table: pd.DataFrame) -> list[str]:
    """The cohort-table columns a latents table keeps (ids, group, known factors)."""
    return [c for c in COLUMNS if c in table.columns]


def code_columns(table: pd.DataFrame, space: str) -> list[str]:
    """The columns of `space` ("shared" or "salient") in a latents table, in order."""
    return [c for c in table.columns if c.startswith(f"{space}_")]


@torch.no_grad()
def encode_batches(module: ContrastiveModule, batches: Iterable[dict[str, Any]],
                   role: str = "target") -> tuple[list[str], pd.DataFrame]:
    """The subject ids of batches of model inputs (`image` [B, 1, X, Y, Z], `subject_id`) and
    one row per scan of their shared (`shared_0…`) and salient (`salient_0…`) code means,
    read as `role` scans, or as the batch's own `role` list where it has one
    (`ContrastiveModule.latent_representation`)."""
    module.eval()
    shared, salient, ids = [], [], []
    for batch in batches:
        z, s = module.latent_representation(batch["image"].to(module.device),
                                            batch.get("role", role))
        shared.append(z.float().cpu().numpy())
        salient.append(s.float().cpu().numpy())
        ids += list(batch["subject_id"])
    codes = {f"{space}_{j}": column
             for space, parts in (("shared", shared), ("salient", salient))
             for j, column in enumerate(np.concatenate(parts).T)}
    return ids, pd.DataFrame(codes)


def encode_split(module: ContrastiveModule, datamodule: ContrastiveDataModule, split: str,
                 role: str = "target") -> pd.DataFrame:
    """One row per `role` scan of `split`: subject_id, group, age, sex, site (and brain_age,
    bag when the table has them), role, then the code means (`encode_batches`)."""
    ids, codes = encode_batches(module, datamodule.input_batches(split, role), role)
    rows = datamodule.splits[split][role].set_index("subject_id").loc[ids].reset_index()
    table = rows[known_columns(rows)].assign(role=role)
    return pd.concat([table, codes], axis=1)


def encode_roles(module: ContrastiveModule, datamodule: ContrastiveDataModule, split: str
                 ) -> pd.DataFrame:
    """`encode_split` of the targets, then the backgrounds, of `split` in one table."""
    return pd.concat([encode_split(module, datamodule, split, role)
                      for role in ("target", "background")], ignore_index=True)
