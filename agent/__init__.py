"""hostagent: a host metrics agent with scheduled collectors and pre-rendered exposition."""

import sys
import types

from agent.deferred import defer_init, import_pure_python

__version__ = "0.1.0"


def _defer_dependency_inits() -> None:
    """What the agent imports of aiohttp and prometheus_client, without their package
    __init__ (client side, HTTP servers) until something asks for more (agent.deferred)."""
    # aiohttp keeps an application's signal and middleware lists in FrozenLists, made and
    # frozen at start-up, never touched per request: the compiled FrozenList would cost
    # ~1 MB of RSS (its extension and the Cython runtime it brings) for nothing.
    import_pure_python("frozenlist", "FROZENLIST_NO_EXTENSIONS")
    # aiohttp.web imports its websocket support; its compiled reader and mask are extension
    # modules of their own (~0.25 MB). The agent serves no websocket: blocked, aiohttp falls
    # back on its pure-Python ones (as where they were not built).
    for extension in ("aiohttp._websocket.reader_c", "aiohttp._websocket.mask"):
        sys.modules.setdefault(extension, None)  # type: ignore[arg-type]  # None: blocked
    defer_init("aiohttp", {"__version__": _aiohttp_version})
    defer_init("prometheus_client")
    _skip_pydantic_plugin_discovery()
    _skip_system_mime_types_for_aiohttp()


def _aiohttp_version() -> str:
    """aiohttp.http imports the package's __version__ (the Server header): asked for only
    when a process imports aiohttp's server side, not by every child process of the agent."""
    # Read off its __init__'s source: importlib.metadata (and the zipfile, csv and email
    # parsing it brings) would cost ~0.4 MB of RSS for one string.
    import importlib.util
    import re

    spec = importlib.util.find_spec("aiohttp")
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as source:
        found = re.search(r'^__version__ = "([^"]+)"', source.read(), re.MULTILINE)
    return found.group(1) if found else "unknown"


def _skip_pydantic_plugin_discovery() -> None:
    """pydantic looks for plugins of its own among every installed distribution's entry
    points when it builds its first validator, with importlib.metadata (~0.5 MB of RSS,
    and the walk over the environment's metadata). The agent uses none: its plugin loader
    is one that finds none (as PYDANTIC_DISABLE_PLUGINS would make it answer)."""
    name = "pydantic.plugin._loader"
    if name not in sys.modules:
        loader = types.ModuleType(name)
        loader.get_plugins = lambda: ()  # type: ignore[attr-defined]
        sys.modules[name] = loader


def _skip_system_mime_types_for_aiohttp() -> None:
    """aiohttp's static-file response builds a mimetypes.MimeTypes as it is imported, which
    first loads the system's tables (/etc/mime.types: ~0.35 MB of RSS of dicts) into the
    mimetypes module; the agent serves no file. Marked as loaded, MimeTypes() is made from
    Python's built-in table alone; mimetypes' own functions (guess_type and the like) still
    load the system's tables on their first use, as they check for that apart."""
    import mimetypes

    if mimetypes._db is None:  # type: ignore[attr-defined]  # nothing has loaded them yet
        mimetypes.inited = True


_defer_dependency_inits()
