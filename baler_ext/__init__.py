"""baler_ext: autoencoder compression of HEP tables with a physics-impact check."""

__version__ = "0.1.0"
