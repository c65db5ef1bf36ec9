"""``python -m jobhooks.cli``."""

from jobhooks.cli.app import main

main()
