"""Contrastive models: nets, the linear start, discriminator, losses, schedules, the
LightningModule, the training stage (`fit`), the codes of a split, and a trained model that
reads new scans (`TrainedModel`).

    from neurocvae.contrastive import load_module, encode_split
"""

from neurocvae.lazy import exports

__all__ = ["AdditiveDecoder", "ContrastiveModule", "ContrastiveNets", "Fitted", "TrainedModel",
           "build_module", "encode_roles", "encode_split", "fit", "initialise_linear",
           "load_module", "write_encoding"]
__getattr__, __dir__ = exports(__name__, {
    "AdditiveDecoder": "nets", "ContrastiveNets": "nets", "ContrastiveModule": "module",
    "build_module": "build", "load_module": "build", "Fitted": "training", "fit": "training",
    "encode_split": "latents", "encode_roles": "latents", "initialise_linear": "linear",
    "TrainedModel": "trained", "write_encoding": "trained"})
