"""Projects and their constitutions: the port, one SQL implementation for both backends."""

from orchestration_service.repositories.projects.port import (
    SETTING_NAMES,
    Constitution,
    ProjectRecord,
    ProjectRepository,
)

__all__ = ["SETTING_NAMES", "Constitution", "ProjectRecord", "ProjectRepository"]
