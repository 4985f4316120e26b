"""Numeric analyses of derived closed forms."""
