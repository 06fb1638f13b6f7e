"""Deciding what to build: a target's stages and their action keys (:mod:`.stages`), the plan
of what would run and why (:mod:`.plan`, :mod:`.why`), the resource-class policy
(:mod:`.policy`) and the plan cache's fast path (:mod:`.plancache`). Runs no tool.
"""
