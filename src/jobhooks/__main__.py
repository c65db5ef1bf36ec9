"""``python -m jobhooks``: the ``jobhooks`` command, where only Python is on the PATH."""

from jobhooks.cli.app import main

main()
