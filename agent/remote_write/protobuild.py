"""Compiles remote.proto into remote_pb2.py (+ .pyi for the type checker) with grpcio-tools.

Run by the package build (setup.py) and, in a source checkout that was never built, on first
import of the wire module. Imports nothing from the agent, so the build can load it by path.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "remote.proto"
OUTPUTS = (HERE / "remote_pb2.py", HERE / "remote_pb2.pyi")


def stale() -> bool:
    mtime = PROTO.stat().st_mtime
    return any(not out.exists() or out.stat().st_mtime < mtime for out in OUTPUTS)


def generate(force: bool = False) -> None:
    if not force and not stale():
        return
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError(
            f"{OUTPUTS[0]} is missing and grpcio-tools is not installed to build it from "
            f"{PROTO.name}: install the package (pip install .) or grpcio-tools") from None
    status = protoc.main(["protoc", f"-I{HERE}", f"--python_out={HERE}", f"--pyi_out={HERE}",
                          str(PROTO)])
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO} (exit {status})")


if __name__ == "__main__":
    generate(force=True)
