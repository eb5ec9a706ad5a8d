"""GitHub's own OpenAPI description (npm ``@octokit/openapi``, ``generated/api.github.com.json``) and a checker that
validates logged requests and responses of the offline GitHub against it with a real JSON Schema validator.

The package is installed with npm into a cache outside the project (``$XDG_CACHE_HOME/airflow-provider-worktree-
tests/octokit-openapi``), once; tests that need it skip with the reason when npm or the registry is missing.
OpenAPI 3.0's ``nullable: true`` becomes JSON Schema's ``"null"`` type and local ``$ref``s are made absolute;
everything else is GitHub's schema as is.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

PACKAGE = "@octokit/openapi@23"
URI = "urn:github-openapi"


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "airflow-provider-worktree-tests" / "octokit-openapi"


def spec_path() -> Path:
    """The description's path, installed on first use (skips the test when it cannot be)."""
    prefix = _cache_dir()
    path = prefix / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            npm = shutil.which("npm")
            if npm is None:
                pytest.skip("npm is not installed: GitHub's OpenAPI description (@octokit/openapi) cannot be fetched")
            done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-fund", "--no-audit",
                                   "--loglevel=error", PACKAGE], capture_output=True, text=True, timeout=600)
            if done.returncode != 0 or not path.exists():
                pytest.skip(f"`npm install {PACKAGE}` failed (registry unreachable?): "
                            f"{(done.stderr or done.stdout).strip()[-300:]}")
    return path


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items() if k not in ("nullable", "example", "examples")}
        if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#/"):
            out["$ref"] = URI + out["$ref"]  # absolute: schemas are validated out of the document
        if node.get("nullable"):
            if "type" in out:
                out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
            if "$ref" in out or "allOf" in out or "anyOf" in out or "oneOf" in out:
                out = {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


#: Request forms GitHub's description documents in prose but not in its schema: (method, path template) -> a schema
#: of the extra form. ``POST .../issues/{n}/labels``: "You can also pass an `array` of labels directly" (PyGithub's
#: ``add_to_labels`` sends that form).
PROSE_FORMS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels"): {"type": "array", "items": {"type": "string"},
                                                                     "minItems": 1},
}


#: Statuses any operation may answer (authentication, rate limits, server errors), with the basic-error body.
ANY_OPERATION = {401, 403, 429, 500, 502, 503}


class Contract:
    """Operations of the description by method and path template; :meth:`check` validates one exchange."""

    def __init__(self, path: Path) -> None:
        from jsonschema import Draft7Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7

        spec = _nullable(json.loads(path.read_text()))
        self.spec = spec
        self.registry = Registry().with_resource(URI, Resource(contents=spec, specification=DRAFT7))
        self.validator_cls = Draft7Validator
        self.ops: list[tuple[str, re.Pattern[str], str, dict[str, Any]]] = []
        for template, item in spec["paths"].items():
            rx = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            for method, op in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    self.ops.append((method.upper(), rx, template, op))

    def _operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        path = path.removeprefix("/api/v3")
        hits = [(t, op) for m, rx, t, op in self.ops if m == method and rx.match(path)]
        # the most specific template (fewest placeholders) when several match
        return min(hits, key=lambda h: h[0].count("{")) if hits else None

    def _errors(self, schema: dict[str, Any], value: Any, where: str) -> list[str]:
        validator = self.validator_cls(schema, registry=self.registry)
        return [f"{where}: {e.json_path}: {e.message[:200]}" for e in validator.iter_errors(value)][:5]

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            cur: Any = self.spec
            for part in node["$ref"].split("#/", 1)[1].split("/"):
                cur = cur[part]
            node = cur
        return node

    def check(self, exchange: dict[str, Any]) -> list[str]:
        """Problems of one logged exchange (empty when the request and the response fit the description)."""
        method, path, status = exchange["method"], exchange["path"], exchange["status"]
        found = self._operation(method, path)
        if found is None:
            return [f"{method} {path}: no such operation in GitHub's API"]
        template, op = found
        where = f"{method} {template} -> {status}"
        problems = []
        body_spec = op.get("requestBody")
        if body_spec and exchange.get("request") is not None:
            schema = self._resolve(body_spec)["content"].get("application/json", {}).get("schema")
            prose = PROSE_FORMS.get((method, template))
            if schema and not (prose and not self._errors(prose, exchange["request"], where)):
                problems += self._errors(schema, exchange["request"], where + " request")
        responses = op.get("responses", {})
        if str(status) not in responses and status in ANY_OPERATION:
            # "Bad credentials", the rate limits and server errors can answer any operation (REST docs:
            # "Troubleshooting", "Rate limits"); their body is the documented basic-error
            return problems + self._errors({"$ref": f"{URI}#/components/schemas/basic-error"},
                                           exchange.get("response"), where + " response")
        if str(status) not in responses:
            return problems + [f"{where}: status {status} is not one GitHub documents ({', '.join(responses)})"]
        response = self._resolve(responses[str(status)])
        schema = (response.get("content") or {}).get("application/json", {}).get("schema")
        if schema and exchange.get("response") is not None:
            problems += self._errors(schema, exchange["response"], where + " response")
        return problems


@lru_cache(maxsize=1)
def contract() -> Contract:
    return Contract(spec_path())


def check_log(log: Path) -> tuple[int, list[str]]:
    """(exchanges checked, problems) of a request log written by the offline GitHub."""
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    # GraphQL (``POST /api/graphql``, the double's one mutation markPullRequestReadyForReview) is not part of the
    # REST description: excluded here on purpose; tests/test_changeset_bulk.py checks its data/errors envelope.
    lines = [x for x in lines if not x["path"].endswith("/graphql")]
    c = contract()
    problems = [p for x in lines for p in c.check(x)]
    return len(lines), problems
