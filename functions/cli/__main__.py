"""`python -m functions.cli`: the same as the `ministudio` console script."""

import sys

from functions.cli import main

sys.exit(main())
