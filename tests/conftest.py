from __future__ import annotations

import shutil

import pytest


def require_tool(name: str) -> str:
    """Path of a real external tool. Missing tools fail the test unless HOSTAGENT_ALLOW_MISSING=1:
    the README's test command installs them, so absence means a broken set-up, not a skip."""
    import os

    path = shutil.which(name)
    if path is None:
        if os.environ.get("HOSTAGENT_ALLOW_MISSING") == "1":
            pytest.skip(f"{name} not installed")
        pytest.fail(f"{name} not found: run the README's test set-up command")
    return path
