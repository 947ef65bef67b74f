"""MNIST: the raw files (``mnist``), their IDX format (``idx``), and the splits the stages read
(``splits``); the size of a digit, the one place it is written."""

SIDE = 28  # a digit is SIDE x SIDE pixels
N_PIXELS = SIDE * SIDE  # 784: a digit as one row of the splits, the codecs' input and output
