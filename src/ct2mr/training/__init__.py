"""Training MR-GAN and its baselines: networks, losses, data, augmentation, the loop, checkpoints."""
