"""xdpdns/hookspecs.py: every hook is documented (datasette's rule), and the
built-in plugins implement only hooks that exist, by the specs' names."""

import inspect

import pytest

from xdpdns import hookspecs
from xdpdns.plugins import load_plugins, new_plugin_manager


def _specs():
    return [
        (name, func)
        for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(func, f"{hookspecs.PROJECT}_spec")
    ]


def test_there_are_hooks():
    names = {name for name, _ in _specs()}
    assert {"config_sections", "zone_sources", "startup", "shutdown", "reload", "stats"} <= names


@pytest.mark.parametrize("name, func", _specs(), ids=[n for n, _ in _specs()])
def test_hook_is_documented(name, func):
    doc = inspect.getdoc(func)
    assert doc, f"hook {name} has no docstring"
    # When it is called ...
    assert "Called" in doc, f"hook {name}: say when it is called"
    # ... every parameter, in pytest's :param: style ...
    for param in inspect.signature(func).parameters:
        assert f":param {param}:" in doc, f"hook {name}: document parameter {param}"
    # ... and whether the first result wins.
    opts = getattr(func, f"{hookspecs.PROJECT}_spec")
    doc = " ".join(doc.split())
    if opts.get("firstresult"):
        assert "first result" in doc.lower(), f"hook {name}: say that the first result wins"
    else:
        # A hook called for one plugin only (resolve: the claimant's) says
        # whose implementation is called instead.
        assert (
            "all results are collected" in doc.lower()
            or "every implementation is called" in doc.lower()
            or "only the implementation of" in doc.lower()
        ), f"hook {name}: say that every implementation is called"


def test_every_hook_has_a_return_annotation():
    for name, func in _specs():
        assert inspect.signature(func).return_annotation is not inspect.Signature.empty, name


def test_specs_register_under_the_project_name():
    pm = new_plugin_manager()
    assert pm.project_name == "xdpdns"
    for name, _ in _specs():
        assert hasattr(pm.hook, name)


def test_installed_plugins_implement_only_known_hooks():
    # check_pending raises for a hook implementation without a spec.
    load_plugins().check_pending()
