"""OpenVINO backend: ONNX -> IR with the ``ovc`` CLI, generation through ``libopenvino_c``."""
