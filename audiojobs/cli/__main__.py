"""``python -m audiojobs.cli``."""
from audiojobs.cli import main

main()
