"""Presentation: charts of derived costs."""
