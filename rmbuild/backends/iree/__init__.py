"""IREE backend: ONNX -> MLIR (iree-import-onnx) -> .vmfb (iree-compile) -> iree.runtime."""
