"""Contrastive models: nets, discriminator, losses, schedules, the LightningModule."""
