"""Rebellions ATOM backend: HF folder -> optimum-rbln 0.12 (compile only) -> .rbln files."""
