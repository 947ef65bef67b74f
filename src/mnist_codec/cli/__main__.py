"""``python -m mnist_codec.cli``: the ``mnist-codec`` command."""

import sys

from . import main

sys.exit(main())
