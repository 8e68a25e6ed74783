"""The package version (one home, read by the package and its build)."""

__version__ = "0.1.0"
