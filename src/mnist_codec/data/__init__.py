"""MNIST: the raw files (``mnist``), their IDX format (``idx``), and the splits the stages read (``splits``)."""
