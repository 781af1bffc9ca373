"""Print the service's OpenAPI document as YAML: ``python -m orchestration_service.contracts``
(``make contract`` writes it to ``contracts/openapi.yaml``; ``tests/contract`` checks that the
file and the served document agree).

The document comes from the routes and models alone. The app is built with the usual
settings (``load_settings()``), but nothing in them reaches the document, so every machine
prints the same bytes; ``tests/contract/test_openapi.py`` checks that.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from orchestration_service.config import load_settings
from orchestration_service.main import create_app


def openapi_document() -> dict[str, Any]:
    # create_app connects nothing (its lifespan does), so this touches no database or broker.
    return create_app(load_settings()).openapi()


def render(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def main() -> None:
    sys.stdout.write(render(openapi_document()))


if __name__ == "__main__":
    main()
