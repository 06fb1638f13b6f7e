"""STAND-IN for NVIDIA ModelOpt (tests only)."""
