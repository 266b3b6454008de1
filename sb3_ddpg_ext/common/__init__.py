"""Building blocks shared by the algorithm: validation, buffers, trees, noise."""
