"""recsys: multimodal recommendation engine."""
