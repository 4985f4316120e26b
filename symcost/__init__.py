"""symcost: closed-form costs of neural networks, derived from tensor-shape specs."""
__version__ = "0.1.0"
