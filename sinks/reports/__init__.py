"""Audit reports: provenance of a prediction, impact of a dataset, completeness of a model, erasure
of a data subject. Each is gathered from the named queries (:mod:`gather`), rendered to
self-contained HTML (:mod:`render`) or PDF (:mod:`pdf`), recorded with its SHA-256 in the query
audit log (:mod:`service`) and served by the sink (:mod:`http`) and `lineage report`.
"""
