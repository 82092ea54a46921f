"""hostagent: a host metrics agent with scheduled collectors and pre-rendered exposition."""

import importlib.metadata

from agent.deferred import defer_init, import_pure_python

__version__ = "0.1.0"


def _defer_dependency_inits() -> None:
    """What the agent imports of aiohttp and prometheus_client, without their package
    __init__ (client side, HTTP servers) until something asks for more (agent.deferred)."""
    # aiohttp keeps an application's signal and middleware lists in FrozenLists, made and
    # frozen at start-up, never touched per request: the compiled FrozenList would cost
    # ~1 MB of RSS (its extension and the Cython runtime it brings) for nothing.
    import_pure_python("frozenlist", "FROZENLIST_NO_EXTENSIONS")
    try:
        aiohttp_version = importlib.metadata.version("aiohttp")  # aiohttp.http imports it
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        defer_init("aiohttp", ("web",), {"__version__": aiohttp_version})
    defer_init("prometheus_client", ("metrics_core",))


_defer_dependency_inits()
