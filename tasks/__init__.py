"""raibid-deploy: the declarative task graph that brings up, checks and ships raibid-ci.

The modules here are imported by ``dodo.py`` (task creators) and by the doit plugin
commands declared in ``pyproject.toml``. Heavy libraries (networkx, rich, yaml) are
imported inside functions so that ``doit list`` and a no-op run stay fast.

One virtualenv may serve several checkouts: the ``doit`` console script imports the
installed (``pip install -e``) checkout's package, ``python -m doit`` the current
directory's. doit reads its plugins from the current directory's pyproject.toml and runs
on its files, so when that directory is a checkout with its own ``tasks/``, that package
is the one imported: ``tasks`` here hands itself over to it. Otherwise one checkout's
code would run on another's files, and the tasks that depend on their own module files
(plan:check, validate:<env>, tilt:check) would run again on each switch between the two.
"""
import os as _os
import sys as _sys


def _checkout_package():
    """The current directory's ``tasks/`` when it is a raibid-deploy checkout (its
    pyproject.toml declares this package's loader) other than the one this file is in."""
    try:
        cwd = _os.getcwd()
        there = _os.path.join(cwd, "tasks")
        if _os.path.realpath(there) == _os.path.dirname(_os.path.realpath(__file__)):
            return None
        if not _os.path.isfile(_os.path.join(there, "__init__.py")):
            return None
        with open(_os.path.join(cwd, "pyproject.toml"), encoding="utf-8") as fh:
            return there if '"tasks.loader:Loader"' in fh.read() else None
    except (OSError, ValueError):  # no current directory, no pyproject.toml
        return None


_there = _checkout_package()
if _there is not None:
    import importlib.util as _util

    _spec = _util.spec_from_file_location(__name__, _os.path.join(_there, "__init__.py"),
                                          submodule_search_locations=[_there])
    _module = _util.module_from_spec(_spec)
    _sys.modules[__name__] = _module  # what `import tasks` gives from here on
    _spec.loader.exec_module(_module)
