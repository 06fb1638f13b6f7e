"""Running vendor tools: toolchain files and their provisioned venvs (:mod:`.toolchains`,
:mod:`.provision`), the scrubbed environment every child gets (:mod:`.toolenv`), a tool's
identity (:mod:`.toolid`), the supervised process tree (:mod:`.toolproc`, :mod:`._supervisor`),
the BinaryCompilerAdapter (:mod:`.adapter`) and what a failed tool's log says (:mod:`.toolfail`).
"""
