"""Reproducible benchmarks of baler_ext against other compressors (not part of the package)."""
