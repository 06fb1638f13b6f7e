"""rmbuild's version, in a module of its own: the build, the plan cache and the provenance
record it, and none of them may import the package's ``__init__`` (the public API at the top of
the house, which imports the loader and the server)."""

__version__ = "0.1.0"
