"""Benchmarks for napari-i2i (not an installed package; run from the repository root)."""
