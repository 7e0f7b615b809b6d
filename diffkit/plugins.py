"""The plugin manager: loads every `diffkit` entry point once and collects what each registers.

Built-ins come in through the same entry points as third-party plugins. A plugin that fails to
import, or whose hook raises, is reported in one line and skipped; two plugins registering one component name
is an error naming both.
DIFFKIT_PLUGINS=gaussian,cold,... loads only the named entry points (as llm's LLM_LOAD_PLUGINS does), to
switch off a misbehaving plugin or to keep a test suite apart from whatever else is installed.
"""

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import click
import pluggy

from diffkit import hookspecs
from diffkit.errors import DiffkitError

KINDS = ("degradations", "networks", "samplers", "feature_spaces")

_manager = None
failed_plugins = []  # (entry point name, distribution, error) for plugins that did not import
hook_failures = {}  # plugin name -> the first warning about one of its hooks
_distributions = {}  # plugin name -> (distribution name, version)


@dataclass(frozen=True)
class Component:
    """One registered component and who provided it."""

    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str
    version: str

    @property
    def code(self):
        """What made this component's outputs: its distribution, version and a hash of its package's source, so
        an edited plugin (an editable install, a checkout) never reuses samples or scores of the old code."""
        return f"{self.distribution} {self.version} source {source_sha256(self.cls.__module__)[:12]}".strip()


def manager():
    """The plugin manager, with every installed `diffkit` entry point loaded (once)."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager("diffkit")
        pm.add_hookspecs(hookspecs)
        for ep in allowed(importlib.metadata.entry_points(group="diffkit")):
            dist = (ep.dist.name, ep.dist.version) if ep.dist else ("unknown", "")
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not take the rest down
                failed_plugins.append((ep.name, dist[0], f"{type(exc).__name__}: {exc}"))
                click.echo(f"Warning: plugin {ep.name!r} ({dist[0]}) failed to load and was skipped: "
                           f"{type(exc).__name__}: {exc}", err=True)
                continue
            _distributions[ep.name] = dist
        pm.check_pending()
        _manager = pm
    return _manager


def allowed(entry_points):
    """The entry points DIFFKIT_PLUGINS names (all of them when it is unset); a name it lists that no installed
    plugin has, or a set but empty list, gets a warning."""
    wanted = os.environ.get("DIFFKIT_PLUGINS")
    if wanted is None:
        return list(entry_points)
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    if not names:
        click.echo("Warning: DIFFKIT_PLUGINS is set but names no plugin, so none is loaded; unset it to load all",
                   err=True)
    missing = sorted(names - {ep.name for ep in entry_points})
    if missing:
        click.echo(f"Warning: DIFFKIT_PLUGINS names {', '.join(missing)}, which no installed plugin provides", err=True)
    return [ep for ep in entry_points if ep.name in names]


def _base_class(kind):
    from diffkit.degradation import Degradation
    from diffkit.feature_space import FeatureSpace
    from diffkit.network import Network
    from diffkit.sampler import Sampler

    return {"degradations": Degradation, "networks": Network, "samplers": Sampler, "feature_spaces": FeatureSpace}[kind]


def call_hook(impl, hook, **kwargs):
    """One plugin's implementation of a hook, called so that it fails alone: an exception in it (an import inside
    the hook, say) is one warning line naming the plugin, which is then skipped for that hook; a hook that returns
    something instead of calling register gets a warning too. DiffkitError (a registration refused) still stops."""
    try:
        returned = impl.function(**kwargs)
    except DiffkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the rest down
        _warn_once(impl.plugin_name, f"Warning: plugin {impl.plugin_name!r} failed in {hook} and was skipped: "
                                     f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return
    if returned is not None and hook.startswith("register_"):
        _warn_once(impl.plugin_name, f"Warning: plugin {impl.plugin_name!r}'s {hook} returned a value instead of "
                                     f"calling register(cls, name=...); nothing it returned was registered")


_warned = set()


def _warn_once(plugin, line):
    if (plugin, line) not in _warned:
        _warned.add((plugin, line))
        hook_failures.setdefault(plugin, line.split(": ", 1)[1])
        click.echo(line, err=True)


def components(kind):
    """{name: Component} for one kind, gathered by calling each plugin's register hook."""
    pm = manager()
    base = _base_class(kind)
    found = {}
    for impl in getattr(pm.hook, f"register_{kind}").get_hookimpls():
        dist, version = _distributions.get(impl.plugin_name, ("(registered at runtime)", ""))

        def register(cls, name, _plugin=impl.plugin_name, _dist=dist, _version=version):
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise DiffkitError(f"plugin {_plugin!r} registered {name!r} as one of the {kind}, "
                                   f"but it is not a subclass of {base.__name__}")
            if name in found:
                raise DiffkitError(f"{kind[:-1]} name {name!r} is registered by both plugin "
                                   f"{found[name].plugin!r} and plugin {_plugin!r}")
            found[name] = Component(kind[:-1], name, cls, _plugin, _dist, _version)

        call_hook(impl, f"register_{kind}", register=register)
    return found


def get_component(kind, name):
    """The component called `name`, or an error that lists the known names."""
    found = components(kind)
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise DiffkitError(f"unknown {kind[:-1]} {name!r}; known {kind}: {known}")
    return found[name]


def plugin_table():
    """One dict per loaded or failed plugin: distribution, version and what it registers."""
    pm = manager()
    rows = {}
    for plugin_name in sorted(name for name, _ in pm.list_name_plugin()):
        dist, version = _distributions.get(plugin_name, ("(registered at runtime)", ""))
        rows[plugin_name] = {"name": plugin_name, "distribution": dist, "version": version,
                             "status": "loaded", **{kind: [] for kind in KINDS}}
    for kind in KINDS:
        for component in components(kind).values():
            rows[component.plugin][kind].append(component.name)
    for name, line in hook_failures.items():
        if name in rows:
            rows[name]["status"] = f"loaded; {line}"
    for name, dist, error in failed_plugins:
        rows[name] = {"name": name, "distribution": dist, "version": "", "status": f"failed: {error}",
                      **{kind: [] for kind in KINDS}}
    return list(rows.values())


def provenance(*components_used):
    """{component name: "distribution version source HASH"} for recording in every output and cache key."""
    return {f"{c.kind}:{c.name}": c.code for c in components_used}


@functools.lru_cache(maxsize=None)
def source_sha256(module):
    """sha256 of the Python source of the top-level package that defines `module` (every .py file under it, with
    its relative path), or of the module's own file; "unknown" when there is no source file (code run by exec)."""
    spec = importlib.util.find_spec(module.split(".")[0])
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0])
        files = {str(p.relative_to(root)): p for p in root.rglob("*.py")}
    elif spec is not None and spec.origin and spec.origin.endswith(".py"):
        files = {Path(spec.origin).name: Path(spec.origin)}
    else:
        return "unknown"
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].read_bytes())
    return h.hexdigest()
