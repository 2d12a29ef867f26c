"""python -m search {study,worker,ui,export,report} ... (see search/cli.py)."""

import sys

from search.cli import main

sys.exit(main())
