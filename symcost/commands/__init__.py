"""The commands of the command line, one module each: `register(subparsers, common)` and `run(args)`."""

NAMES = ("derive", "compare", "solve", "plan", "sweep", "plot", "report", "validate", "devices", "presets", "zoo", "ops")
