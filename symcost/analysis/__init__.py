"""Analyses on derived closed forms: evaluation, training state, roofline, comparison, configs, validation."""
