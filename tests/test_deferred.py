"""agent.deferred: aiohttp and prometheus_client imported without their package __init__ until
something asks for more, and then everything works as with a plain import. Each case runs in a
fresh interpreter, where `import agent` is the first import."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_server_side_loads_alone_and_the_rest_on_first_use() -> None:
    run("""
        import asyncio, importlib.metadata, sys
        import agent
        import aiohttp
        from aiohttp import web
        from prometheus_client.metrics_core import GaugeMetricFamily

        deferred = ("aiohttp.client", "aiohttp.connector", "prometheus_client.exposition")
        assert not any(name in sys.modules for name in deferred), sys.modules.keys()
        # the websocket reader is aiohttp's pure-Python one (its compiled one is blocked)
        from aiohttp._websocket.reader import WebSocketReader
        assert WebSocketReader.__module__ == "aiohttp._websocket.reader_py"
        assert aiohttp.__version__ == importlib.metadata.version("aiohttp")
        # a submodule not imported yet comes alone, as attribute and in a from-import
        assert aiohttp.formdata.FormData and "aiohttp.client" not in sys.modules
        from aiohttp import cookiejar
        assert "aiohttp.client" not in sys.modules

        from aiohttp import ClientSession  # the package's own names: __init__ runs now
        assert "aiohttp.client" in sys.modules and aiohttp.ClientTimeout
        assert aiohttp.web is web and aiohttp.cookiejar is cookiejar
        try:
            aiohttp.no_such_name
        except AttributeError:
            pass
        else:
            raise AssertionError("aiohttp.no_such_name")

        async def main():
            app = web.Application()
            app.router.add_get("/", lambda request: web.Response(text="served"))
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            async with ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    assert await response.text() == "served"
            await runner.cleanup()

        asyncio.run(main())
        import prometheus_client
        assert prometheus_client.generate_latest(prometheus_client.CollectorRegistry()) == b""
        assert prometheus_client.metrics_core.GaugeMetricFamily is GaugeMetricFamily
    """)


def test_the_agent_package_alone_imports_neither() -> None:
    """What a child process of the agent (a textfile parse, the SSH worker) imports from the
    package stays light: aiohttp's server side and its version come with their first use."""
    out = run("""
        import sys
        import agent
        print(sorted(m for m in ("aiohttp.web", "aiohttp.http", "importlib.metadata",
                                 "prometheus_client.metrics_core") if m in sys.modules))
    """)
    assert out.split() == ["[]"]


def test_init_runs_once_whichever_thread_asks_first() -> None:
    run("""
        import sys, threading
        import agent
        import aiohttp
        barrier, got = threading.Barrier(8), []

        def ask():
            barrier.wait()
            got.append(aiohttp.ClientSession)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 8 and len(set(got)) == 1
        assert "__getattr__" not in vars(aiohttp) or vars(aiohttp)["__getattr__"].__module__ \\
            == "aiohttp"
    """)


def test_an_already_imported_package_is_left_alone() -> None:
    out = run("""
        import aiohttp
        from agent.deferred import defer_init
        print(defer_init("aiohttp"), "aiohttp.client" in __import__("sys").modules)
    """)
    assert out.split() == ["False", "True"]


def test_frozenlist_is_the_pure_python_one_and_the_environment_is_left_as_it_was() -> None:
    out = run("""
        import os, sys
        import agent
        from agent.deferred import import_pure_python
        import frozenlist
        assert frozenlist.FrozenList is frozenlist.PyFrozenList
        assert "frozenlist._frozenlist" not in sys.modules
        assert "FROZENLIST_NO_EXTENSIONS" not in os.environ
        assert import_pure_python("frozenlist", "FROZENLIST_NO_EXTENSIONS") is False
        os.environ["SWITCH"] = "kept"  # a value the caller had is restored
        assert import_pure_python("colorsys", "SWITCH") and "colorsys" in sys.modules
        print(os.environ["SWITCH"])
    """)
    assert out.split() == ["kept"]


def test_pydantic_builds_validators_without_walking_installed_metadata() -> None:
    run("""
        import sys
        import agent
        from pydantic import BaseModel, ValidationError

        class Settings(BaseModel):
            port: int

        assert Settings(port="9100").port == 9100
        try:
            Settings(port="x")
        except ValidationError:
            pass
        else:
            raise AssertionError("port='x' accepted")
        assert "importlib.metadata" not in sys.modules, "plugin discovery ran"
    """)
