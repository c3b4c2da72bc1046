"""python -m host_tools.board.virtual_board: serve a virtual board (see cli.py)."""
from .cli import main

raise SystemExit(main())
