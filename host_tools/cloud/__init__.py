"""The SPOT cloud: the pairing registry, the controller that tracks commands, the broker."""
