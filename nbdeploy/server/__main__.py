"""``python -m nbdeploy.server REPO``: the server in the foreground (see ``nbdeploy serve``)."""

from __future__ import annotations

import sys

from .process import main

if __name__ == "__main__":
    sys.exit(main())
