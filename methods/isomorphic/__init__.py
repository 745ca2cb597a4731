"""Isomorphic Pruning for Vision Models (ECCV 2024, arXiv 2407.04616)."""
