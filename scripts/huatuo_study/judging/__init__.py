"""Judging: the verdict records and the human labelling sheet."""
