"""``python -m engine.cli``: the same as ``recon``."""

from engine.cli.core import main

raise SystemExit(main())
