"""Data: cohort tables (schema, validation, UK Biobank adapter), splits, volumes (load, orient,
resample, crop, normalise), the volume cache, augmentation and the DataModules.

    from neurocvae.data import read_manifest, Preprocessing, ContrastiveDataModule
"""

from neurocvae.lazy import exports

__all__ = ["BrainAgeDataModule", "ContrastiveDataModule", "Preprocessing", "VolumeCache",
           "build_ukbb_manifest", "open_or_build", "read_manifest"]
__getattr__, __dir__ = exports(__name__, {
    "read_manifest": "cohort", "Preprocessing": "volumes", "VolumeCache": "cache",
    "open_or_build": "cache", "BrainAgeDataModule": "datamodules",
    "ContrastiveDataModule": "datamodules", "build_ukbb_manifest": "ukbb"})
