"""rmbuild's glue to :mod:`artifact_store`: opening the store and translating its errors
(:mod:`.store`), remotes (:mod:`.remotes`), action results (:mod:`.results`) and failed
builds (:mod:`.failures`).
"""
