"""The one exception type users see: a one-line message, a non-zero exit, no traceback."""

import click


class DiffkitError(click.ClickException):
    """Bad input or state the user can fix; the CLI prints `Error: <message>` and exits 1."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped training after a checkpoint of the last finished step was written.

    The CLI prints the message and exits 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, step, signum=2, advice="continue with --resume", message=None):
        super().__init__(f"{message or f'interrupted at step {step}; checkpoint saved'}, {advice}")
        self.step, self.exit_code, self.message = step, 128 + int(signum), message
