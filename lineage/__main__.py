from __future__ import annotations

import sys

from lineage.cli import main

sys.exit(main())
