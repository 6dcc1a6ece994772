"""Pieces of the VQ-VAE training loop that are worth testing on their own (the loop is training_scripts/)."""
