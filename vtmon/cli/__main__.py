"""``python -m vtmon.cli``: the ``vtmon`` command."""

from vtmon.cli import main

main()
