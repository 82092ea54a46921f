"""Importing parts of a dependency without running its package __init__, which loads it whole.

aiohttp's __init__ imports its client side (sessions, connector, cookie jar, and two default
SSL contexts holding the system's CA bundle: ~4 MB of RSS) though an agent that only serves
HTTP never uses it; prometheus_client's imports its HTTP and WSGI servers. defer_init() puts
the package in sys.modules as a module whose __init__ has not run, so `import aiohttp.web`
loads only what aiohttp.web imports. The first access to any other attribute of the package
(but a submodule's, which imports that submodule) runs its __init__ then, in that module:
`aiohttp.ClientSession` and `from aiohttp import ClientSession` work as before wherever they
are used, only later.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Mapping


def defer_init(name: str, lazy: Mapping[str, Callable[[], object]] | None = None) -> bool:
    """Register package `name` with its __init__ deferred. `lazy`: attributes its submodules
    import from the package (such as aiohttp's __version__), each made by its function when
    first asked for (if that raises, __init__ runs instead). False, and nothing done, if the
    package is already imported or is not a plain package."""
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    package = importlib.util.module_from_spec(spec)
    lock = threading.RLock()
    state = "deferred"

    def __getattr__(attribute: str) -> object:
        nonlocal state
        if importlib.util.find_spec(f"{name}.{attribute}") is not None:
            # a submodule (`from aiohttp import web`, `from . import hdrs` in a submodule ask
            # for it this way): that alone, as __init__ would have imported it
            return importlib.import_module(f"{name}.{attribute}")
        with lock:  # another thread waits here until __init__ has run
            if state == "deferred" and lazy and attribute in lazy:
                try:
                    value = package.__dict__[attribute] = lazy[attribute]()
                except Exception:
                    pass  # __init__ binds it
                else:
                    return value
            if state == "deferred":
                state = "running"
                try:
                    assert spec.loader is not None
                    spec.loader.exec_module(package)
                finally:
                    state = "done"
                    if package.__dict__.get("__getattr__") is __getattr__:
                        del package.__dict__["__getattr__"]
            elif state == "running":  # __init__ itself asking for a name not bound yet
                raise AttributeError(f"partially initialized module {name!r} has no "
                                     f"attribute {attribute!r}")
        return getattr(package, attribute)

    package.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = package
    return True


def import_pure_python(name: str, switch: str) -> bool:
    """Import package `name` in its pure-Python form, which it picks when the environment
    variable `switch` is set as it is imported (left as it was afterwards). False if the
    package was imported already."""
    if name in sys.modules:
        return False
    previous = os.environ.get(switch)
    os.environ[switch] = "1"
    try:
        importlib.import_module(name)
    finally:
        if previous is None:
            del os.environ[switch]
        else:
            os.environ[switch] = previous
    return True
