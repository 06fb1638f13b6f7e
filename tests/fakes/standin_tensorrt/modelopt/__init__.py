"""STAND-IN for NVIDIA ModelOpt (tests only, issue 8)."""
