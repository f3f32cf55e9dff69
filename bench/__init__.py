"""Benchmarks (`make bench`): results are written into BENCHMARKS.md, section by section."""
