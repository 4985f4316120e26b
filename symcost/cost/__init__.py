"""Costs: the additive cost record, the accounting settings and the closed forms they give."""
