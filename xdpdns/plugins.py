"""The plugin manager: hook specifications plus the plugins of the ``xdpdns``
entry-point group, registered in the order they declare.

Nothing is loaded at import time: :func:`load_plugins` does it, once, when a
command needs plugins.  The built-in plugins (``xdpdns_plugins``) come in
through the same entry-point group as third-party ones.

The order.  For one hook, pluggy calls the ``tryfirst`` implementations, the
last registered first; then the unmarked ones, the last registered first;
then the ``trylast`` ones, the first registered first (hook wrappers go
around all of them).  A plugin module (or object) may declare where it goes
among the others::

    XDPDNS_BEFORE = ("zonefile",)  # my hooks are called before zonefile's
    XDPDNS_AFTER = ("acl",)        # ... and after acl's

:func:`load_plugins` sorts the plugins topologically by these declarations;
of the plugins free to go next, the one whose name sorts first goes next.
That is the *plugin order* (:func:`plugin_order`): it registers the plugins in
the reverse of it, so that the unmarked and the ``tryfirst`` implementations
of every hook are called in plugin order.  ``tryfirst`` and ``trylast`` still
move one implementation to the front or the back, ahead of any declaration;
among ``trylast`` implementations pluggy keeps registration order, so that
there the plugin order comes out reversed.  Where a declaration is broken
that way (or by a plugin registered after :func:`load_plugins`),
:func:`order_problems` says so, and load_plugins logs it as a warning.

A declared order that is a cycle is an error (:class:`PluginError`) naming
the plugins and their declarations.  A declaration naming a plugin that is
not loaded is a warning and has no effect: before and after say where a
plugin goes *if* the other one is there; a plugin that needs another one
says so in its package's dependencies, which pip enforces.
"""

from __future__ import annotations

import heapq
import importlib.metadata
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import pluggy

from xdpdns import hookspecs

ENTRY_POINT_GROUP = "xdpdns"
# Module (or object) attributes with which a plugin declares its order.
BEFORE = "XDPDNS_BEFORE"
AFTER = "XDPDNS_AFTER"

log = logging.getLogger("xdpdns.plugins")


class PluginError(Exception):
    """A plugin that cannot be loaded, breaks the hook contract, or whose
    declared order cannot be met."""


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as ``xdpdns plugins`` shows it."""

    name: str
    origin: str  # "DIST VERSION (module)" for entry points, else the module's file
    hooks: tuple[str, ...]  # the hooks it implements, sorted
    # (hook, "tryfirst" | "trylast" | "hookwrapper" ...) for marked implementations.
    marks: tuple[tuple[str, str], ...] = ()
    before: tuple[str, ...] = ()  # as declared (XDPDNS_BEFORE)
    after: tuple[str, ...] = ()  # as declared (XDPDNS_AFTER)
    missing: tuple[str, ...] = ()  # the declared names of plugins not loaded


@dataclass(frozen=True)
class _Edge:
    """``first``'s hooks are called before ``then``'s, as ``declared_by`` says."""

    first: str
    then: str
    declared_by: str
    attribute: str  # BEFORE or AFTER

    def __str__(self) -> str:
        other = self.then if self.attribute == BEFORE else self.first
        return f"{self.declared_by!r} declares {self.attribute} {other!r}"


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows the hook specifications and no plugin."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


# ---- declarations ------------------------------------------------------------


def declared_order(name: str, plugin: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A plugin's (XDPDNS_BEFORE, XDPDNS_AFTER): sequences of plugin names."""
    declared = []
    for attribute in (BEFORE, AFTER):
        value = getattr(plugin, attribute, ())
        if (
            isinstance(value, (str, bytes))
            or not isinstance(value, (tuple, list))
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise PluginError(
                f"plugin {name!r}: {attribute} must be a tuple of plugin "
                f"names, like ('zonefile',); got {value!r}"
            )
        declared.append(tuple(value))
    return declared[0], declared[1]


def _edges(
    declared: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]],
) -> tuple[list[_Edge], list[tuple[str, str, str]]]:
    """The declared edges between loaded plugins, and (plugin, attribute,
    name) of every declaration naming a plugin that is not loaded."""
    edges, missing = [], []
    for name, (before, after) in declared.items():
        for attribute, others in ((BEFORE, before), (AFTER, after)):
            for other in others:
                if other not in declared:
                    missing.append((name, attribute, other))
                elif attribute == BEFORE:
                    edges.append(_Edge(name, other, name, attribute))
                else:
                    edges.append(_Edge(other, name, name, attribute))
    return edges, missing


def _cycle(remaining: set[str], edges: Iterable[_Edge]) -> list[_Edge]:
    """One cycle among the plugins a topological sort could not place (each
    of them has a predecessor among them)."""
    into: dict[str, _Edge] = {}
    for edge in sorted(edges, key=lambda e: (e.then, e.first, e.declared_by, e.attribute)):
        if edge.first in remaining and edge.then in remaining:
            into.setdefault(edge.then, edge)
    path, seen = [], {}
    node = min(remaining)
    while node not in seen:  # walk backwards until a plugin repeats
        seen[node] = len(path)
        path.append(into[node])
        node = into[node].first
    cycle = path[seen[node] :]
    cycle.reverse()  # forwards: first -> then
    start = min(range(len(cycle)), key=lambda i: cycle[i].first)
    return cycle[start:] + cycle[:start]  # from the name that sorts first


def sort_plugins(declared: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> list[str]:
    """The plugin order: a topological sort of the declarations in which, of
    the plugins free to go next, the one whose name sorts first goes next.

    :param declared: plugin name -> (XDPDNS_BEFORE, XDPDNS_AFTER).
    Raises PluginError for a cycle.  Names of plugins not in ``declared``
    are left out (see :func:`load_plugins` for the warning).
    """
    edges, _missing = _edges(declared)
    successors: dict[str, set[str]] = {name: set() for name in declared}
    indegree = dict.fromkeys(declared, 0)
    for edge in edges:
        if edge.then not in successors[edge.first]:
            successors[edge.first].add(edge.then)
            indegree[edge.then] += 1
    ready = [name for name, n in indegree.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for then in successors[name]:
            indegree[then] -= 1
            if indegree[then] == 0:
                heapq.heappush(ready, then)
    if len(order) < len(declared):
        cycle = _cycle(set(declared) - set(order), edges)
        names = ", ".join(repr(e.first) for e in cycle)
        steps = "; ".join(f"{e.first!r} before {e.then!r} ({e})" for e in cycle)
        raise PluginError(f"plugins {names}: their declared order is a cycle: {steps}")
    return order


# ---- loading -----------------------------------------------------------------


def _entry_points(pm: pluggy.PluginManager):
    """(name, entry point, distribution) of the group's entry points that
    pluggy would load: the first one of each name, none already registered
    or blocked, in pluggy's own order of distributions."""
    found = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in found:
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            found[ep.name] = (ep, dist)
    return [(name, ep, dist) for name, (ep, dist) in found.items()]


def _dist_name(dist) -> str:
    return f"{dist.metadata['Name']} {dist.version}"


def load_plugins(pm: pluggy.PluginManager | None = None) -> pluggy.PluginManager:
    """Loads every plugin of the ``xdpdns`` entry-point group, in plugin order.

    Plugins already registered in ``pm`` take part in the order too (they are
    registered again, under the same names).  Raises PluginError when a
    plugin cannot be imported, implements a hook that does not exist (a
    misspelt name would otherwise never be called) or with a signature the
    spec does not have, or when the declared order is a cycle.  Declarations
    naming a plugin that is not loaded, and declarations that tryfirst or
    trylast override, are logged as warnings.
    """
    pm = pm or new_plugin_manager()
    loaded: dict[str, Any] = {}
    for name, ep, dist in _entry_points(pm):
        try:
            # The module stays in sys.modules: pluggy's own load below gets
            # the same object.
            loaded[name] = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {name!r} ({ep.value} from {_dist_name(dist)}) "
                f"cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
    earlier = _registered(pm)
    plugins = {**earlier, **loaded}
    order = sort_plugins({name: declared_order(name, plugin) for name, plugin in plugins.items()})

    for plugin in earlier.values():
        pm.unregister(plugin)
    for name in reversed(order):  # pluggy calls the last registered first
        try:
            if name in loaded:
                # Through pluggy so that list_plugin_distinfo() knows the
                # distribution; name= loads just this entry point.
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
            else:
                pm.register(earlier[name], name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc
    for problem in order_problems(pm):
        log.warning("%s", problem)
    return pm


# ---- what is loaded, in which order -----------------------------------------


def _registered(pm: pluggy.PluginManager) -> dict[str, Any]:
    # list_name_plugin() is in registration order (None: a blocked name).
    return {name: plugin for name, plugin in pm.list_name_plugin() if plugin is not None}


def plugin_order(pm: pluggy.PluginManager) -> list[str]:
    """The names of the registered plugins in plugin order: the order in
    which pluggy calls their unmarked hook implementations (the last
    registered first)."""
    return list(reversed(_registered(pm)))


def _is_wrapper(impl) -> bool:
    # pluggy 1.0 knows hookwrapper=True; later versions also wrapper=True.
    return bool(getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False))


def _mark(impl) -> str:
    marks = [m for m in ("tryfirst", "trylast") if getattr(impl, m, False)]
    marks += [m for m in ("hookwrapper", "wrapper") if getattr(impl, m, False)]
    return " ".join(marks)


def _hook_callers(pm: pluggy.PluginManager) -> dict[str, Any]:
    callers = {}
    for plugin in _registered(pm).values():
        for caller in pm.get_hookcallers(plugin) or ():
            callers.setdefault(caller.name, caller)
    return dict(sorted(callers.items()))


def _call_order(caller, wrappers: bool = False) -> list[Any]:
    # get_hookimpls() lists the implementations in the reverse of the order
    # in which they are called.
    return [impl for impl in reversed(caller.get_hookimpls()) if _is_wrapper(impl) == wrappers]


def hook_order(pm: pluggy.PluginManager, hook: str) -> list[str]:
    """The plugins whose implementations of ``hook`` pluggy calls, in the
    order it calls them (hook wrappers left out: they go around the rest)."""
    caller = getattr(pm.hook, hook, None)
    return [impl.plugin_name for impl in _call_order(caller)] if caller else []


def order_problems(pm: pluggy.PluginManager) -> list[str]:
    """The declarations the registered plugins do not keep: names of plugins
    that are not loaded, and hooks called in another order than declared
    (tryfirst/trylast win over declarations, and a plugin registered after
    load_plugins goes first)."""
    plugins = _registered(pm)
    edges, missing = _edges(
        {name: declared_order(name, plugin) for name, plugin in plugins.items()}
    )
    problems = [
        f"plugin {name!r}: {attribute} names {other!r}, a plugin that is not "
        f"loaded; the declaration has no effect"
        for name, attribute, other in missing
    ]
    for hook, caller in _hook_callers(pm).items():
        for wrappers in (False, True):
            called = _call_order(caller, wrappers)
            position = {impl.plugin_name: i for i, impl in enumerate(called)}
            for edge in edges:
                if edge.first not in position or edge.then not in position:
                    continue
                if position[edge.first] < position[edge.then]:
                    continue
                first, then = called[position[edge.first]], called[position[edge.then]]
                if _mark(first) != _mark(then):
                    why = ", ".join(
                        f"the implementation of {impl.plugin_name!r} is {_mark(impl)}"
                        for impl in (then, first)
                        if _mark(impl)
                    )
                elif getattr(first, "trylast", False):
                    why = (
                        "pluggy calls trylast implementations in registration order, "
                        "the reverse of the plugin order"
                    )
                else:
                    why = f"{edge.then!r} was registered out of the declared order"
                problems.append(
                    f"hook {hook}: plugin {edge.then!r} is called before "
                    f"{edge.first!r} although {edge} ({why})"
                )
    return problems


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """What is loaded, in plugin order: each plugin, where it came from, its
    hooks and their marks, and its declared order."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    plugins = _registered(pm)
    infos = []
    for name in plugin_order(pm):
        plugin = plugins[name]
        dist = dists.get(id(plugin))
        module = getattr(plugin, "__name__", None) or type(plugin).__name__
        if dist is not None:
            origin = f"{dist.project_name} {dist.version} ({module})"
        else:
            origin = (
                inspect.getsourcefile(plugin) if inspect.ismodule(plugin) else repr(plugin)
            ) or module
        hooks, marks = [], []
        for caller in pm.get_hookcallers(plugin) or ():
            hooks.append(caller.name)
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and _mark(impl):
                    marks.append((caller.name, _mark(impl)))
        before, after = declared_order(name, plugin)
        missing = tuple(n for n in before + after if n not in plugins)
        infos.append(
            PluginInfo(
                name, origin, tuple(sorted(hooks)), tuple(sorted(marks)), before, after, missing
            )
        )
    return infos


def hook_orders(pm: pluggy.PluginManager) -> dict[str, list[str]]:
    """hook name -> :func:`hook_order`, for every hook some plugin implements."""
    return {hook: hook_order(pm, hook) for hook in _hook_callers(pm)}
