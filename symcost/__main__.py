"""`python -m symcost` runs the command line."""
import sys

from symcost.cli import main

sys.exit(main())
