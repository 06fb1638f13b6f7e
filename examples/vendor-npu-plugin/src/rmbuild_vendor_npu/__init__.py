"""rmbuild backend plugin for the VN-series NPU (a fictional binary-only accelerator).

Kept free of imports: rmbuild locates ``rmbuild_vendor_npu.resources`` (profiles, templates,
toolchain) without loading the plugin, and this file runs when it does.
"""

__version__ = "0.1.0"
