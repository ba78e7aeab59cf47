"""`korag serve`: collections behind an HTTP API and a web page (see `korag.serve.app`).

`ServeSettings` (`korag.serve.schemas`) needs only pydantic; `create_app` needs the ``serve``
extra (FastAPI), so it is imported when first used, not with this package.
"""

from __future__ import annotations

from typing import Any

from korag.serve.schemas import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from korag.serve.app import create_app

        return create_app
    raise AttributeError(name)
