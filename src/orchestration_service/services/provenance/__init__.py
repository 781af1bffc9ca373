"""Provenance use cases: records, graph queries, taint and suspect cascades, rollback, legacy import."""
