"""Entry point PyInstaller freezes: the same `priorpath` command as the installed console script."""
import sys

from trainer.cli import main

sys.exit(main())
