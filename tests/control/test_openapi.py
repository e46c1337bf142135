"""The OpenAPI document is a valid OpenAPI 3 document, served by the app, listing exactly its routes."""

from __future__ import annotations

from typing import Any

import orjson

from pypilot.control.openapi import DOCUMENT
from pypilot.control.routes import ROUTES
from tests.control.harness import ControlPilot

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOCUMENT
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if "$ref" in node else []
        for v in node.values():
            out += refs(v)
        return out
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_document_is_structurally_valid_openapi_3() -> None:
    doc = DOCUMENT
    assert doc["openapi"].startswith("3.0.")
    assert doc["info"]["title"] and doc["info"]["version"]
    op_ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        params_in_path = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        for method, op in item.items():
            assert method in HTTP_METHODS, (path, method)
            assert op["responses"], (path, method)
            for code, resp in op["responses"].items():
                assert code == "default" or (code.isdigit() and 100 <= int(code) < 600)
                resp = resolve(resp["$ref"]) if "$ref" in resp else resp
                assert resp["description"]
            declared = {
                (resolve(p["$ref"]) if "$ref" in p else p)["name"]
                for p in op.get("parameters", [])
                if (resolve(p["$ref"]) if "$ref" in p else p)["in"] == "path"
            }
            assert declared == params_in_path, (path, method)
            op_ids.append(op["operationId"])
    assert len(op_ids) == len(set(op_ids))
    for ref in refs(doc):
        assert resolve(ref) is not None
    orjson.dumps(doc)  # serialisable as is


def test_document_lists_every_route_and_method() -> None:
    assert set(DOCUMENT["paths"]) == set(ROUTES)
    for label, route in ROUTES.items():
        documented = {m.upper() for m in DOCUMENT["paths"][label]}
        if "*" in route.methods:
            assert {"GET", "POST", "PUT", "DELETE"} <= documented
        else:
            assert documented == route.methods - {"HEAD"}, label


def test_document_is_served(pilot: ControlPilot) -> None:
    code, headers, body = pilot.http("GET", "/v3/openapi.json")
    assert code == 200 and headers["content-type"] == "application/json"
    assert orjson.loads(body) == orjson.loads(orjson.dumps(DOCUMENT))
