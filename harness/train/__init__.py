"""Training and evaluation of NeuMF: the Trainer, its input pipeline, and (in fast/) the exact fast paths."""
