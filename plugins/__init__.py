"""The built-in plugins of xdpdns, importable as ``xdpdns_plugins``.

They are ordinary plugins: each is registered through the ``xdpdns``
entry-point group (pyproject.toml) and uses only the public hooks.
"""
