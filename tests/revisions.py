"""Migration revisions the tests start from."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from orchestration_service.db.migrate import MIGRATIONS_DIR


def previous_revision() -> str:
    """The revision before head: a database one migration behind."""
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    head = scripts.get_revision(scripts.get_current_head())
    assert head is not None and isinstance(head.down_revision, str)
    return head.down_revision
