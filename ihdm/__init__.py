"""ihdm: generative modelling with inverse heat dissipation, and a DDPM baseline.

Conventions used throughout: images on disk are uint8 NHWC arrays in ``.npz`` files;
images in tensors are float32 NCHW in [0, 1]. Seeds are explicit arguments and the same
seed gives the same samples on the CPU.
"""

__version__ = "0.1.0"
