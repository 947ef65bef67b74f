"""mnist-codec: how well do PCA and autoencoders compress a handwritten digit to 32 numbers?

The package holds all logic of the DVC pipeline; the scripts in ``stages/`` only wire
params and paths to the functions here. Importing the package is cheap: heavy libraries
(torch, MLflow, matplotlib) are imported by the modules that need them.
"""

__version__ = "0.1.0"
