"""The version of hsspetsc (one place: the package, the CLI and the file format read it)."""
__version__ = "0.2.0"
