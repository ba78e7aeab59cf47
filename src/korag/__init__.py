"""korag: Korean-first question answering over documents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("korag")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
