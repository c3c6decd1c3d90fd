"""Training and evaluation of NeuMF: the Trainer and its state, its input pipeline, and (in fast/) the exact
fast paths."""
