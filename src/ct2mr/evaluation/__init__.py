"""Metrics, per-patient evaluation, statistical comparisons, figures and the report's tables."""
