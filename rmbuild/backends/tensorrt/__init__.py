"""NVIDIA TensorRT backend (issue 8): trtexec builds, plan headers, timing caches, the loader."""
