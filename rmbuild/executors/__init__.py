"""Where targets build: this machine's process pool (``-j N``, the default) or an existing
Ray cluster (``--executor ray``, issue 9). Both run the same target build function."""
