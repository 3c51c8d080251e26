"""The label audit: which labels a detector says are probably wrong (:mod:`.rank`: missing,
wrong class, loose, spurious), the reports (:mod:`.report`), and the confirmed fixes applied
(:mod:`.fixes`). Reviewing them in FiftyOne is :mod:`ssd.integrations.fiftyone.audit`.
No MLOps tool is imported here."""
