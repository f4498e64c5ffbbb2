"""The service's OpenAPI 3.1 document, generated from :mod:`serving.schemas`, and a page
that renders it (self-contained: the service runs where no CDN may be reachable)."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serving import schemas as S

REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _answer(model: type[BaseModel], what: str, *errors: int) -> dict[str, Any]:
    out = {"200": {"description": what, "content": {"application/json": {"schema": _ref(model)}}}}
    for status in errors:
        out[str(status)] = {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": _ref(S.Error)}},
        }
    return out


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


_ERRORS = {
    401: "No valid bearer token (admin endpoints).",
    404: "Unknown item id (or, for a recommendation, no known item in the history).",
    408: "The body did not arrive within the body timeout.",
    409: "Strategy `e2e` while no end-to-end ranker is published, or `neural` while no "
    "relevance model is published for the served embeddings.",
    413: "The body is larger than the limit (64 KiB by default).",
    422: "The request does not match its schema; `errors` names each field.",
}
_ADMIN = [{"bearer": []}]


def _query_parameters() -> list[dict[str, Any]]:
    schema = S.SimilarQuery.model_json_schema()["properties"]
    notes = {"exclude": "Comma-separated item ids left out of the results."}
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": notes.get(name, prop.get("description", "")),
            "schema": {"type": "string"} if name == "exclude" else prop,
        }
        for name, prop in schema.items()
    ]


@cache
def openapi_document() -> dict[str, Any]:
    requests = [S.RecommendRequest, S.SimilarBatchRequest, S.ReloadRequest]
    answers = [S.SimilarResponse, S.SimilarBatchResponse, S.RecommendResponse, S.Health,
               S.ReloadResponse, S.Error]  # fmt: skip
    models = requests + answers
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    item = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cograph similar items",
            "version": "1",
            "description": "Similar items and recommendations over the served item "
            "embeddings. Scores are `similarity + prior`; both parts come with each result.",
        },
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/items/{item_id}/similar": {
                "get": {
                    "summary": "The items most similar to one item.",
                    "parameters": [item, *_query_parameters()],
                    "responses": _answer(S.SimilarResponse, "Similar items.", 404, 422),
                }
            },
            "/v1/items/similar:batch": {
                "post": {
                    "summary": f"Similar items for up to {S.MAX_BATCH_IDS} item ids at once.",
                    "requestBody": _body(S.SimilarBatchRequest),
                    "responses": _answer(S.SimilarBatchResponse, "Per id.", 408, 413, 422),
                }
            },
            "/v1/recommend": {
                "post": {
                    "summary": "Items for a user's history.",
                    "requestBody": _body(S.RecommendRequest),
                    "responses": _answer(
                        S.RecommendResponse, "Recommended items.", 404, 408, 409, 413, 422
                    ),  # fmt: skip
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness, with the served version.",
                    "responses": _answer(S.Health, "Alive."),
                }
            },  # fmt: skip
            "/readyz": {
                "get": {
                    "summary": "Readiness: an index version is loaded.",
                    "responses": _answer(S.Health, "Ready."),
                }
            },  # fmt: skip
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format).",
                    "responses": {"200": {"description": "Metrics."}},
                }
            },  # fmt: skip
            "/v1/admin/reload": {
                "post": {
                    "summary": "Serve LATEST (unpinning), or a named version (pinning it until "
                    "an unpin or the next publish).",
                    "security": _ADMIN,
                    "requestBody": {**_body(S.ReloadRequest), "required": False},
                    "responses": _answer(S.ReloadResponse, "Reloaded.", 401, 404, 422),
                }
            },
            "/v1/admin/unpin": {
                "post": {
                    "summary": "Follow LATEST again.",
                    "security": _ADMIN,
                    "responses": _answer(S.Health, "Unpinned.", 401),
                }
            },
        },
    }


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cograph similar items: API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{background:#f4f4f4;padding:.1rem .3rem;border-radius:3px}
h2{border-bottom:1px solid #ddd;margin-top:2rem} .method{font-weight:bold;text-transform:uppercase}
td,th{padding:.2rem .6rem;text-align:left;vertical-align:top}
</style></head><body>
<h1>cograph similar items</h1>
<p>The machine-readable document is <a href="/openapi.json">/openapi.json</a>.</p>
<div id="api">Loading…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const esc = s => String(s ?? '').replace(/[&<>]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
  const name = ref => ref ? ref.split('/').pop() : '';
  let html = `<p>${esc(doc.info.description)}</p>`;
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      html += `<h2><span class="method">${method}</span> <code>${esc(path)}</code></h2>`;
      html += `<p>${esc(op.summary)}${op.security ? ' (bearer token)' : ''}</p>`;
      if (op.parameters) {
        html += '<table><tr><th>parameter</th><th>in</th><th>description</th></tr>';
        for (const p of op.parameters)
          html += `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td>` +
                  `<td>${esc(p.description)}</td></tr>`;
        html += '</table>';
      }
      if (op.requestBody) {
        const ref = name(op.requestBody.content['application/json'].schema.$ref);
        html += `<p>Body: <a href="#${ref}">${ref}</a></p>`;
      }
      html += '<ul>' + Object.entries(op.responses).map(([s, r]) =>
        `<li><b>${s}</b>: ${esc(r.description)}</li>`).join('') + '</ul>';
    }
  }
  html += '<h2>Schemas</h2>';
  for (const [n, s] of Object.entries(doc.components.schemas)) {
    html += `<h3 id="${n}">${n}</h3><table>`;
    for (const [f, p] of Object.entries(s.properties || {}))
      html += `<tr><td><code>${esc(f)}</code></td><td>${esc(p.type || name(p.$ref) || '')}` +
              `</td><td>${esc(p.description)}</td></tr>`;
    html += '</table>';
  }
  document.getElementById('api').innerHTML = html;
});
</script></body></html>
"""
