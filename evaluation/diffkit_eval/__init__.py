"""The evaluation harness: classifier features, metrics, comparisons and reports.

A plugin like any other: it adds its commands through the register_commands hook, so the core
never imports it.
"""

from diffkit import hookimpl


@hookimpl
def register_commands(cli):
    from diffkit_eval.commands import register

    register(cli)
