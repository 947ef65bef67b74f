"""The codecs and how they are made: models, PCA, the training loop, stacking, seeding, the device."""
