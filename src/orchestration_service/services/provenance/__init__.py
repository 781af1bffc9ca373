"""Provenance use cases: the read side (listings, graph walks, consistency), taint with its
suspect cascade, rollbacks, recording a completed task, and the legacy import. The rest of the
app reaches them through the facade ``services/provenance_store.py``."""
