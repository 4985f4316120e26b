"""symcost: closed-form costs of neural networks, derived from tensor-shape specs.

The public API (docs/api.md): `derive` returns an `Analysis` of closed forms and, as data, the analyses its settings
ask for; `Analysis.at(...)` exact values; `solve` inverse questions; `sweep` every metric over a grid (a `Table`);
`render` the command line's formats; every bad input raises `SymcostError`.
"""
__version__ = "0.1.0"

_LAZY = {
    "derive": ("symcost.api", "derive"),
    "solve": ("symcost.api", "solve"),
    "Analysis": ("symcost.api", "Analysis"),
    "Values": ("symcost.api", "Values"),
    "sweep": ("symcost.analysis.sweep", "sweep"),
    "Table": ("symcost.analysis.table", "Table"),
    "SymcostError": ("symcost.errors", "SymcostError"),
    "render": ("symcost.present", "render"),
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    """Import the API on first use, so `import symcost` (and the command line's start) stays cheap."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'symcost' has no attribute '{name}'")
