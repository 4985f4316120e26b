"""Presentation: closed forms and analyses as text, JSON, LaTeX and Markdown, through one unit formatter."""
