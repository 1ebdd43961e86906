"""Training: flow-matching DiT training with a staged curriculum, VAE training and LoRA."""
