"""Where targets build: this machine's process pool (``-j N``, the default) or an existing
Ray cluster (``--executor ray``). Both run the same target build function."""
