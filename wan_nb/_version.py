"""The package version (one place; ``wan_nb.__version__`` and recipes read it)."""

__version__ = "0.1.0"
