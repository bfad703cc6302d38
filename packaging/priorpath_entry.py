"""The script PyInstaller freezes: the desktop app, whose `--run-trainer ARGS` is the `priorpath` command line."""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # spawned workers (Windows, macOS) re-enter here and must not start the app
    from priorpath_desktop.app import main

    sys.exit(main())
