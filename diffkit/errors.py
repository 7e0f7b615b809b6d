"""The one exception type users see: a one-line message, a non-zero exit, no traceback."""

import click


class DiffkitError(click.ClickException):
    """Bad input or state the user can fix; the CLI prints `Error: <message>` and exits 1."""
