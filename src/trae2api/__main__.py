"""``python -m trae2api``: the same as the ``trae2api`` command."""

from trae2api.cli import main

raise SystemExit(main())
