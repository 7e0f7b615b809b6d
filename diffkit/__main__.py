"""The `diffkit` command and `python -m diffkit`. Kept tiny: Ctrl-C while the heavy imports load exits 130
with one line instead of a traceback."""

import os
import sys


def main():
    try:
        from diffkit.cli import main as cli_main
    except KeyboardInterrupt:
        print("Error: interrupted while starting", file=sys.stderr, flush=True)
        os._exit(130)  # a half-imported torch can crash the interpreter's shutdown; nothing is open to clean up
    cli_main()


if __name__ == "__main__":
    main()
