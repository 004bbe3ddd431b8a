"""Brain age: SFCN, its soft-label training, the linear bias correction, BAG selection and the
stage function (`run`).

    from neurocvae.brainage import SFCN, load_weights, BiasCorrection
"""

from neurocvae.lazy import exports

__all__ = ["SFCN", "AgeBins", "BiasCorrection", "BrainAgeModule", "load_weights", "run"]
__getattr__, __dir__ = exports(__name__, {
    "SFCN": "sfcn", "load_weights": "sfcn", "AgeBins": "bins", "BiasCorrection": "correction",
    "BrainAgeModule": "module", "run": "stage"})
