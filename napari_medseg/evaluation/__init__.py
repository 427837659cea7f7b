"""Evaluation: per-case Dice / HD95 (MONAI metrics) and reports (per-case table, mean ± sd summary)."""
