"""The floor of this architecture: aiohttp + uvloop serving fixed exposition bytes from memory.

usage: floor_app.py PORT PLAIN_FILE GZIP_FILE CONTENT_TYPE
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvloop
from aiohttp import web


def main() -> None:
    port, plain_file, gzip_file, content_type = sys.argv[1:5]
    plain, gzipped = Path(plain_file).read_bytes(), Path(gzip_file).read_bytes()

    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=gzipped, headers={"Content-Type": content_type,
                                                       "Content-Encoding": "gzip"})
        return web.Response(body=plain, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()
