"""Experiments that rerun the paper's comparisons in miniature (`mathforge experiment ...`)."""
