"""Brain age: SFCN, its soft-label training, the linear bias correction, BAG selection and the
stage function (`run`), and a trained run that predicts new scans (`BrainAgeModel`).

    from neurocvae.brainage import SFCN, load_weights, BiasCorrection
"""

from neurocvae.lazy import exports

__all__ = ["SFCN", "AgeBins", "BiasCorrection", "BrainAgeModel", "BrainAgeModule",
           "load_weights", "run"]
__getattr__, __dir__ = exports(__name__, {
    "SFCN": "sfcn", "load_weights": "sfcn", "AgeBins": "bins", "BiasCorrection": "correction",
    "BrainAgeModule": "module", "BrainAgeModel": "trained", "run": "stage"})
