"""Build step: compile the remote write .proto before the package's modules are collected."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithProto(build_py):
    def run(self) -> None:
        path = Path(__file__).resolve().parent / "agent" / "remote_write" / "protobuild.py"
        spec = importlib.util.spec_from_file_location("protobuild", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate(force=True)
        super().run()


setup(cmdclass={"build_py": BuildPyWithProto})
