"""`python -m host_tools`: the `spot` command line."""
from host_tools.cli import main

raise SystemExit(main())
