"""``python -m tierline`` is the ``tierline`` command."""

from tierline.cli.main import main

main()
