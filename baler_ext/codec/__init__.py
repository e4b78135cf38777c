"""Compressed-file format and the compression modes that fill it."""
