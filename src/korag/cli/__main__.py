"""``python -m korag.cli``."""

from korag.cli import main

main()
