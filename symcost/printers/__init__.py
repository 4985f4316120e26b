"""Printers: closed forms as text, JSON, LaTeX and Markdown."""
