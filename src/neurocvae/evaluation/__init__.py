"""Evaluation of trained contrastive models: latents, metrics (issue 6 adds reports)."""
