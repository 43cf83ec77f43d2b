"""``python -m captum_fv`` (and ``torchrun -m captum_fv``) runs the command-line interface."""

import sys

from .cli import main

sys.exit(main())
