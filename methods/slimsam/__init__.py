"""SlimSAM: 0.1% Data Makes Segment Anything Slim (NeurIPS'24, arXiv 2312.05284; czg1225/SlimSAM)."""
