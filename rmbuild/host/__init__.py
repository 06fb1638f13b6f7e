"""Facts about this machine: CPU, ISA and the host digest (:mod:`.hostinfo`), accelerators each
vendor's documented way (:mod:`.resources`).
"""
