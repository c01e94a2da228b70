"""``python -m client``: the same as the ``whisper-pipeline`` command."""

import sys

from client.cli import main

sys.exit(main())
