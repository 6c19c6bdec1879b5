"""Allow ``python -m vnicbond``."""

from vnicbond.cli import main

raise SystemExit(main())
