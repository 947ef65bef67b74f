"""The search for the strongest 32-number codec: ``make tune`` (Ray Tune, Optuna's TPE sampler and
the ASHA scheduler over the space in ``tune.yaml``), trials scored on the validation split only,
the winner proven on the test images as a DVC experiment (docs/tune.md)."""
