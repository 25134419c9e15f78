"""`python -m nodeagent.cli`: the same entry point as the `nodeagent` script."""

from nodeagent.cli import main

raise SystemExit(main())
