"""Entry point for ``python -m statemachine``."""

from statemachine.cli import main

raise SystemExit(main())
