"""`korag serve`: collections behind the HTTP API and web page of `korag.serve`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from korag.cli.common import config_from, err, flag, out, require_extra
from korag.collections.config import AskSettings
from korag.errors import ConfigError
from korag.serve.schemas import ServeSettings


def register(app: typer.Typer) -> None:
    """Add ``korag serve``."""
    app.command("serve")(serve)


def serve(
    names: Annotated[list[str] | None, typer.Argument(help="collections to serve [default: all in --home]")] = None,
    host: flag(str, ServeSettings, "host", "--host") = None,
    port: flag(int, ServeSettings, "port", "--port") = None,
    api_key: Annotated[
        str | None, typer.Option(help="require this key on every request (or set KORAG_API_KEY)", show_default=False)
    ] = None,
    max_upload_mb: flag(float, ServeSettings, "max_upload_mb", "--max-upload-mb") = None,
    cors_origin: Annotated[list[str] | None, typer.Option(help="allow this origin through CORS (repeatable)")] = None,
    reader: flag(str, AskSettings, "reader", "--reader") = None,
    k: flag(int, AskSettings, "k", "--k", "-k") = None,
    model_name: flag(str, AskSettings, "model_name", "--model-name") = None,
    home: Annotated[Path | None, typer.Option("--home", help="where named collections live")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps")] = "auto",
) -> None:
    """Serve collections over HTTP: a JSON API (docs at /docs) and a web page at /."""
    require_extra("serve", "korag serve")
    import uvicorn

    from korag.collections.store import Collection, collection_path, default_home, list_collections
    from korag.serve.app import create_app

    key = api_key or os.environ.get("KORAG_API_KEY") or None
    settings = config_from(
        ServeSettings,
        flags={"host": host, "port": port, "api_key": key, "max_upload_mb": max_upload_mb, "cors_origins": cors_origin},
    )
    ask = config_from(AskSettings, flags={"reader": reader, "k": k, "model_name": model_name})
    paths = [collection_path(n, home) for n in names] if names else list_collections(home)
    if not paths:
        raise ConfigError(f"no collections in {home or default_home()}: korag collection create NAME, then korag add")
    collections = {}
    for p in paths:
        c = Collection.open(p, device=device)
        c.warm_up()  # models load now, not on the first request
        collections[c.name] = c
    write_key = None if settings.api_key else secrets.token_urlsafe(16)
    app = create_app(collections, settings, ask, write_key=write_key)
    url = f"http://{settings.host}:{settings.port}/"
    out.print(f"serving {', '.join(collections)} on {url} (API docs: {url}docs)")
    if write_key:
        out.print(f"open {url}?key={write_key} to add and remove documents from the page")
        out.print(f"writes over the API need: Authorization: Bearer {write_key}")
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]listening on {settings.host}: reachable from the network[/]")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
