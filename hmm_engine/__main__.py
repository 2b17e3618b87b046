"""``python -m hmm_engine ...``: see :mod:`hmm_engine.cli`."""

import sys

from hmm_engine.cli import main

sys.exit(main())
