"""neurocvae: contrastive generative learning on 3D brain MRI."""

__version__ = "0.1.0"
