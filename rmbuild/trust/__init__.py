"""Artifacts you can trust across organisations: signatures, provenance, a trust policy.

* :mod:`rmbuild.trust.oms`: OpenSSF Model Signing bundles (Sigstore bundle v0.3, DSSE, in-toto
  Statement v1) made and checked through the ``model-signing`` library (extra ``sign``);
* :mod:`rmbuild.trust.provenance`: the SLSA provenance v1 statement every build records;
* :mod:`rmbuild.trust.signatures`: signing a stored artifact, judging its signatures;
* :mod:`rmbuild.trust.policy`: ``trust = "signed-by:KEY.pub"``, enforced by the loader (``run``,
  ``serve``, ``rmbuild.load``) and by ``pull``.

Signatures are kept as attachments of the artifact's content (:mod:`artifact_store.
attachments`), which push and pull carry. ``docs/trust.md`` and ``docs/provenance.md`` say the
formats and what is verified where.
"""
