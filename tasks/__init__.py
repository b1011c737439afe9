"""raibid-deploy: the declarative task graph that brings up, checks and ships raibid-ci.

The modules here are imported by ``dodo.py`` (task creators) and by the doit plugin
commands declared in ``pyproject.toml``. Heavy libraries (networkx, rich, yaml) are
imported inside functions so that ``doit list`` and a no-op run stay fast.
"""
