"""Commands that run DVC experiments of the pipeline: the rate-distortion sweep and the frontier."""
