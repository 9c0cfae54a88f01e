"""The plugin manager: hook specifications plus the plugins of the ``xdpdns``
entry-point group.

Nothing is loaded at import time: :func:`load_plugins` does it, once, when a
command needs plugins.  The built-in plugins (``xdpdns_plugins``) come in
through the same entry-point group as third-party ones.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pluggy

from xdpdns import hookspecs

ENTRY_POINT_GROUP = "xdpdns"


class PluginError(Exception):
    """A plugin that cannot be loaded or that breaks the hook contract."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    origin: str  # "DIST VERSION" for entry points, else the module's file
    hooks: tuple[str, ...]


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows the hook specifications and no plugin."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(pm: pluggy.PluginManager | None = None) -> pluggy.PluginManager:
    """Loads every plugin of the ``xdpdns`` entry-point group.

    Raises PluginError when a plugin cannot be imported or implements a hook
    that does not exist (a misspelt name would otherwise never be called).
    """
    pm = pm or new_plugin_manager()
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except Exception as exc:
        raise PluginError(f"cannot load the plugins of entry-point group "
                          f"{ENTRY_POINT_GROUP!r}: {type(exc).__name__}: {exc}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc
    return pm


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """What is loaded: each plugin, where it came from and its hooks."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        dist = dists.get(id(plugin))
        if dist is not None:
            origin = f"{dist.project_name} {dist.version}"
        else:
            origin = inspect.getsourcefile(plugin) if inspect.ismodule(plugin) else repr(plugin)
        module = getattr(plugin, "__name__", None) or type(plugin).__name__
        if dist is not None:
            origin += f" ({module})"
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(name, origin or module, hooks))
    return infos
