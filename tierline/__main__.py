"""``python -m tierline`` is the ``tierline`` command."""

from tierline.cli import main

main()
