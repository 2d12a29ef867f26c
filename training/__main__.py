"""python -m training {train,predict,evaluate} ... (see training/cli.py)."""

import sys

from training.cli import main

sys.exit(main())
