"""``python -m ndops.bench``: the same as the ``ndops-bench`` console script."""
import sys

from .cli import main

sys.exit(main())
