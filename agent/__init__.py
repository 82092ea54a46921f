"""hostagent: a host metrics agent with scheduled collectors and pre-rendered exposition."""

import importlib.metadata

from agent.deferred import defer_init

__version__ = "0.1.0"


def _defer_dependency_inits() -> None:
    """What the agent imports of aiohttp and prometheus_client, without their package
    __init__ (client side, HTTP servers) until something asks for more (agent.deferred)."""
    try:
        aiohttp_version = importlib.metadata.version("aiohttp")  # aiohttp.http imports it
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        defer_init("aiohttp", ("web",), {"__version__": aiohttp_version})
    defer_init("prometheus_client", ("metrics_core",))


_defer_dependency_inits()
