"""neurocvae: contrastive generative learning on 3D brain MRI."""

import warnings

__version__ = "0.1.0"

# Harmless notices from dependencies newer than their callers, repeated every epoch otherwise
# (the tests filter the same in pyproject.toml).
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                        category=FutureWarning)

from neurocvae.lazy import exports  # noqa: E402

__all__ = ["BrainAgeModel", "TrainedModel"]
__getattr__, __dir__ = exports(__name__, {"BrainAgeModel": "brainage.trained",
                                          "TrainedModel": "contrastive.trained"})
