"""The bottom layer: user errors, atomic writes, process usage and the TensorFlow runtime environment; imports nothing else of the harness."""
