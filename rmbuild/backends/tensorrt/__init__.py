"""NVIDIA TensorRT backend: trtexec builds, plan headers, timing caches, the loader."""
