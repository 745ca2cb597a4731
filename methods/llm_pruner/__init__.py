"""LLM-Pruner: on the structural pruning of large language models (NeurIPS'23, arXiv 2305.11627)."""
