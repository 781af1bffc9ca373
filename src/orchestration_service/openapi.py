"""The OpenAPI document: FastAPI's, with the error responses made to say what the HTTP
edge (``orchestration_service.http``) really sends.

* Errors are ``application/problem+json`` with the ``Problem`` schema. FastAPI files a
  declared response model under the route's media type (``application/json``); entries
  marked with ``application/problem+json`` (``schemas.common.problem_responses``) get the
  schema moved there, and FastAPI's own 422 (``HTTPValidationError``) is replaced.
* Errors raised before a handler runs are listed from the operation's shape: 422 wherever
  a body or a parameter can fail validation, 400 (malformed JSON) and 413 (body limit)
  wherever there is a body.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from orchestration_service.schemas.common import PROBLEM_DESCRIPTIONS, PROBLEM_JSON, Problem

REF_PREFIX = "#/components/schemas/"
PROBLEM_REF = REF_PREFIX + "Problem"
_FASTAPI_VALIDATION = (REF_PREFIX + "HTTPValidationError", "HTTPValidationError", "ValidationError")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _problem_response(code: int | str) -> dict[str, Any]:
    description = "Error"  # a range ("4XX") or "default"
    if str(code).isdigit():
        description = PROBLEM_DESCRIPTIONS.get(int(code)) or HTTPStatus(int(code)).phrase
    return {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}}


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = ((response.get("content") or {}).get("application/json") or {}).get("schema") or {}
    return bool(schema.get("$ref") == _FASTAPI_VALIDATION[0])


_ANY_STRING = ({"type": "string"}, {"anyOf": [{"type": "string"}, {"type": "null"}]})
_ANNOTATIONS = ("title", "description", "default", "examples")


def _may_fail_validation(parameter: dict[str, Any]) -> bool:
    """A parameter that is required (and may be left out) or constrained beyond "a string"."""
    if parameter.get("required") and parameter.get("in") != "path":
        return True
    schema = {k: v for k, v in (parameter.get("schema") or {}).items() if k not in _ANNOTATIONS}
    return schema not in _ANY_STRING


def _edge_errors(operation: dict[str, Any]) -> list[int]:
    codes: list[int] = []
    if "requestBody" in operation or any(map(_may_fail_validation, operation.get("parameters", []))):
        codes.append(422)
    if "requestBody" in operation:
        codes += [400, 413]
    return codes


def _references(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_references(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_references(v, ref) for v in node)
    return False


def problem_details(document: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``document`` (FastAPI's output) in place as described above; returns it."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in schemas:
        problem = Problem.model_json_schema(ref_template=REF_PREFIX + "{model}", mode="serialization")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
    for path_item in document.get("paths", {}).values():
        for method in _METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for code, response in list(responses.items()):
                if _is_fastapi_validation(response):
                    del responses[code]  # FastAPI adds it to anything with a parameter
                elif PROBLEM_JSON in (response.get("content") or {}):  # problem_responses()
                    problem = _problem_response(code)
                    problem["description"] = response.get("description") or problem["description"]
                    if response.get("headers"):
                        problem["headers"] = response["headers"]
                    responses[code] = problem
            for edge in _edge_errors(operation):
                responses.setdefault(str(edge), _problem_response(edge))
            operation["responses"] = dict(sorted(responses.items()))
    # FastAPI's validation error shapes, once nothing points at them any more.
    if not _references(document.get("paths", {}), _FASTAPI_VALIDATION[0]):
        for name in _FASTAPI_VALIDATION[1:]:
            schemas.pop(name, None)
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    return document


def install(app: FastAPI) -> None:
    """Serve (and cache) the rewritten document as ``app.openapi()``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_details(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
