"""The paper's parts: its design, results, claims, case study, compute, provenance and figure style."""
