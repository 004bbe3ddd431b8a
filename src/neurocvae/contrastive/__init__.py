"""Contrastive models: nets, the linear start, discriminator, losses, schedules, the
LightningModule, the training stage (`fit`) and the codes of a split.

    from neurocvae.contrastive import load_module, encode_split
"""

from neurocvae.lazy import exports

__all__ = ["AdditiveDecoder", "ContrastiveModule", "ContrastiveNets", "Fitted",
           "build_module", "encode_roles", "encode_split", "fit", "initialise_linear",
           "load_module"]
__getattr__, __dir__ = exports(__name__, {
    "AdditiveDecoder": "nets", "ContrastiveNets": "nets", "ContrastiveModule": "module",
    "build_module": "build", "load_module": "build", "Fitted": "training", "fit": "training",
    "encode_split": "latents", "encode_roles": "latents", "initialise_linear": "linear"})
