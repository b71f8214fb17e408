"""The DEFT ablation: top k% by DEFT score vs random k% vs the full set, each with and without guidance.

Every variant trains with the same seed, step budget and held-out split, so differences between
them come from the training pairs and the guidance term alone.
"""
