"""The `diffkit` command and `python -m diffkit`. Kept tiny: Ctrl-C while a module is importing exits 130 with
one line instead of a traceback."""

import os
import signal


def interrupt(signum, frame):
    """Ctrl-C raises KeyboardInterrupt as usual, unless it lands inside an import: an import of torch cut short
    leaves modules half-built, which fail later (a RecursionError) or crash the interpreter's shutdown. Imports
    happen on first use (plugins import torch inside their hooks), so this holds for the whole command."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            os.write(2, b"Error: interrupted\n")
            os._exit(130)  # nothing is half-written: outputs are written to a temporary file, then renamed
        frame = frame.f_back
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGINT, interrupt)
    from diffkit.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
