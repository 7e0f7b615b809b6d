"""The four hooks a diffkit plugin can implement. Nothing else lives here."""

import pluggy

hookspec = pluggy.HookspecMarker("diffkit")
hookimpl = pluggy.HookimplMarker("diffkit")


@hookspec
def register_degradations(register):
    """Call register(cls, name=...) once per Degradation subclass the plugin provides."""


@hookspec
def register_networks(register):
    """Call register(cls, name=...) once per Network subclass the plugin provides."""


@hookspec
def register_samplers(register):
    """Call register(cls, name=...) once per Sampler subclass the plugin provides."""


@hookspec
def register_commands(cli):
    """Add click commands to the `diffkit` group."""
