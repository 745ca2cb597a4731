"""DepGraph: Towards Any Structural Pruning (CVPR 2023, arXiv 2301.12900)."""
