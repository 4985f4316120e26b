"""The model: dimensions (the only place Symbols are made) and the shape-checked graph."""
