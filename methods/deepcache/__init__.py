"""DeepCache: Accelerating Diffusion Models for Free (CVPR'24, arXiv 2312.00858)."""
