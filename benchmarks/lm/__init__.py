"""Language-model evaluation shared by LLM methods: the mini-world generator (world.py), the lm-eval runner
(lmeval.py) and LLM-Pruner-protocol token perplexity (ppl.py)."""
