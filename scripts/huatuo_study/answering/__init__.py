"""Answering questions: the batched decoding loop and the per-question sampling around it."""
