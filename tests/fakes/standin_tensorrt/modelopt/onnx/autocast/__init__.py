"""STAND-IN for ``modelopt.onnx.autocast`` (tests only)."""
