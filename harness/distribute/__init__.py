"""Where a run executes: host facts and the hardware gate, tf.distribute strategies and cluster specs, provenance."""
