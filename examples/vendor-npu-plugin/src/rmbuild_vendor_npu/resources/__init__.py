"""Data only: ``profiles/`` (with ``profiles/toolchains/``) and ``templates/``, registered in
the entry-point group ``rmbuild.resources``."""
