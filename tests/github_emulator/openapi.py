"""GitHub's official OpenAPI description, loaded once per process, and a fast validator over it.

The description is the npm package ``@octokit/openapi`` (``generated/api.github.com.json``),
installed by ``.ci/run`` into ``.ci/node``. It is OpenAPI 3.0.3; its schemas are validated as
JSON Schema draft 4 (the dialect OpenAPI 3.0 schema objects are based on) after one change made
while the JSON is parsed: ``nullable: true`` becomes an explicit ``null`` alternative. GitHub
puts ``nullable`` beside ``type`` and ``enum``, and also beside ``oneOf``/``anyOf``/``allOf`` and
alone; in every case it means "or null", which is what real GitHub traffic shows.

Every schema is validated through a ``$ref`` into the one loaded document (a ``referencing``
registry resource), so nothing is copied; a validator is built lazily per schema location and
cached. Operations are found by matching the request path against the path templates, literal
segments beating parameters (``/issues/comments/{id}`` beats ``/issues/{issue_number}/...``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import referencing
import referencing.jsonschema

SPEC_ENV = "ORCH_GITHUB_OPENAPI"
SPEC_VERSION = "23.0.2"
_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = _ROOT / ".ci" / "node" / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
DOC_URI = "urn:github:api.github.com.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Statuses GitHub may answer on any operation although the description does not list them there.
GENERIC_STATUSES = frozenset({401, 403, 404, 429, 500, 502, 503, 504})


class SpecMissing(RuntimeError):
    pass


def spec_path() -> Path:
    env = os.environ.get(SPEC_ENV)
    return Path(env) if env else DEFAULT_SPEC


def _nullable_hook(obj: dict[str, Any]) -> dict[str, Any]:
    """json object_hook: turn an OpenAPI 3.0 ``nullable: true`` into a draft-4 null alternative."""
    if obj.get("nullable") is not True:
        return obj
    rest = {k: v for k, v in obj.items() if k != "nullable"}
    t = rest.get("type")
    if isinstance(t, str):
        rest["type"] = [t, "null"]
        if isinstance(rest.get("enum"), list) and None not in rest["enum"]:
            rest["enum"] = [*rest["enum"], None]
        return rest
    if any(k in rest for k in ("oneOf", "anyOf", "allOf", "$ref", "enum", "not")):
        keep: dict[str, Any] = {k: rest.pop(k) for k in ("description", "title", "example") if k in rest}
        return {**keep, "anyOf": [{"type": "null"}, rest]}
    return rest  # no type assertion at all: null is already allowed


# --- formats -------------------------------------------------------------------------------

_FORMATS = jsonschema.FormatChecker(formats=())
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$")


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    date.fromisoformat(value)
    return True


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S*$", value) is not None


def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


for _fmt, _fn in (
    ("date-time", _is_date_time),
    ("date", _is_date),
    ("uri", _is_uri),
    ("int32", _is_int32),
    ("int64", _is_int64),
):
    _FORMATS.checks(_fmt, raises=ValueError)(_fn)


# --- a draft-4 validator that remembers which (schema, value) pairs were valid ---------------

# GitHub's objects repeat: the same user, label or repository appears in every item of a page.
# "$ref" is where every named schema is entered, so a valid (ref, value) pair is remembered (per
# loaded description) and not validated again; an invalid one is always validated afresh.
_DRAFT4_REF = jsonschema.Draft4Validator.VALIDATORS["$ref"]
_VALID_MAX = 200_000


def _remembering_validator() -> Any:
    valid: dict[tuple[str, str], bool] = {}
    lock = threading.Lock()

    def ref(validator: Any, ref: str, instance: Any, schema: Any) -> Any:
        if not isinstance(instance, dict) or not ref.startswith("#/components/schemas/"):
            yield from _DRAFT4_REF(validator, ref, instance, schema)
            return
        key = (ref, json.dumps(instance, sort_keys=True, separators=(",", ":"), default=repr))
        if key in valid:
            return
        errors = list(_DRAFT4_REF(validator, ref, instance, schema))
        if not errors:
            with lock:
                if len(valid) >= _VALID_MAX:
                    valid.clear()
                valid[key] = True
        yield from errors

    return jsonschema.validators.extend(jsonschema.Draft4Validator, {"$ref": ref})


# --- the index -----------------------------------------------------------------------------


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@dataclass
class Parameter:
    name: str
    location: str  # path | query | header | cookie
    required: bool
    schema_ptr: str
    schema: Mapping[str, Any]


@dataclass
class Operation:
    method: str
    template: str
    operation_id: str
    pointer: str
    parameters: dict[tuple[str, str], Parameter]
    body_required: bool
    body_ptrs: dict[str, str]  # media type -> schema pointer
    responses: dict[str, dict[str, str]]  # status or "default" -> media type -> schema pointer
    response_headers: dict[str, list[str]] = field(default_factory=dict)

    def response_for(self, status: int) -> dict[str, str] | None:
        for key in (str(status), f"{status // 100}XX", "default"):
            if key in self.responses:
                return self.responses[key]
        return None


def _mend_unsatisfiable(doc: dict[str, Any]) -> None:
    """The one place where the description cannot be met as written, named and mended narrowly.

    An Events API entry's ``payload`` is a ``oneOf`` over the event kinds, but ``public-event`` has no required
    property (every object matches it) and ``watch-event`` requires only ``action``: a real IssuesEvent payload
    matches three alternatives, so "exactly one" fails for everything GitHub sends except ``{}``. It is read as
    ``anyOf``, which alone would accept any object; so the emulator checks each payload it records against the
    schema of its own kind (``GitHubEmulator._feed``, ``EVENT_SCHEMAS``) and a mismatch is a violation like any other."""
    payload = doc.get("components", {}).get("schemas", {}).get("event", {}).get("properties", {}).get("payload")
    if isinstance(payload, dict) and "oneOf" in payload:
        payload["anyOf"] = payload.pop("oneOf")


class OpenAPISpec:
    """The loaded description: operation lookup and request/response validation."""

    def __init__(self, path: Path) -> None:
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            self.doc: dict[str, Any] = json.load(fh, object_hook=_nullable_hook)
        _mend_unsatisfiable(self.doc)
        self.path = path
        self.version = str(self.doc.get("info", {}).get("version", "?"))
        resource = referencing.jsonschema.DRAFT4.create_resource(self.doc)
        self.registry: referencing.Registry[Any] = referencing.Registry().with_resource(DOC_URI, resource)
        self._validator_class = _remembering_validator()
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self._vlock = threading.Lock()
        self._ops: dict[str, dict[int, list[tuple[tuple[str | None, ...], tuple[str, ...], Operation]]]] = {}
        self._index()
        self.load_seconds = time.perf_counter() - t0

    # -- pointers

    def resolve(self, obj: Any, ptr: str) -> tuple[Any, str]:
        """Follow non-schema $refs (parameters, responses, request bodies) to (object, pointer)."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj:
            ref = obj["$ref"]
            assert ref.startswith("#/"), ref
            ptr = ref[1:]
            obj = self.doc
            for part in ref[2:].split("/"):
                obj = obj[part.replace("~1", "/").replace("~0", "~")]
            seen += 1
            assert seen < 20, ref
        return obj, ptr

    def _index(self) -> None:
        for template, item in self.doc["paths"].items():
            item_ptr = "/paths/" + _escape(template)
            common = item.get("parameters", [])
            segs = tuple(s for s in template.split("/")[1:])
            pattern = tuple(None if (s.startswith("{") and s.endswith("}")) else s for s in segs)
            names = tuple(s[1:-1] if p is None else "" for s, p in zip(segs, pattern))
            for method in METHODS:
                if method not in item:
                    continue
                op = item[method]
                op_ptr = f"{item_ptr}/{method}"
                params: dict[tuple[str, str], Parameter] = {}
                for base_ptr, plist in (
                    (f"{item_ptr}/parameters", common),
                    (f"{op_ptr}/parameters", op.get("parameters", [])),
                ):
                    for i, raw in enumerate(plist):
                        prm, pptr = self.resolve(raw, f"{base_ptr}/{i}")
                        schema = prm.get("schema", {})
                        params[(prm["in"], prm["name"])] = Parameter(
                            prm["name"], prm["in"], bool(prm.get("required")), f"{pptr}/schema", schema
                        )
                body_required, body_ptrs = False, {}
                if "requestBody" in op:
                    body, bptr = self.resolve(op["requestBody"], f"{op_ptr}/requestBody")
                    body_required = bool(body.get("required"))
                    for media, content in body.get("content", {}).items():
                        if "schema" in content:
                            body_ptrs[media] = f"{bptr}/content/{_escape(media)}/schema"
                responses: dict[str, dict[str, str]] = {}
                headers: dict[str, list[str]] = {}
                for status, raw in op.get("responses", {}).items():
                    resp, rptr = self.resolve(raw, f"{op_ptr}/responses/{status}")
                    responses[status] = {
                        media: f"{rptr}/content/{_escape(media)}/schema"
                        for media, content in resp.get("content", {}).items()
                        if "schema" in content
                    }
                    headers[status] = [h.lower() for h in resp.get("headers", {})]
                operation = Operation(
                    method.upper(),
                    template,
                    op.get("operationId", ""),
                    op_ptr,
                    params,
                    body_required,
                    body_ptrs,
                    responses,
                    headers,
                )
                by_len = self._ops.setdefault(method.upper(), {}).setdefault(len(segs), [])
                by_len.append((pattern, names, operation))
        for lengths in self._ops.values():
            for entries in lengths.values():
                # literal segments first, left to right
                entries.sort(key=lambda e: tuple(0 if s is not None else 1 for s in e[0]))

    # -- lookup

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for METHOD and a request path (no query), with its decoded path parameters."""
        segs = path.split("?", 1)[0].split("/")[1:]
        if len(segs) > 1 and segs[-1] == "":
            segs = segs[:-1]
        if len(segs) >= 2 and segs[0] == "repositories" and segs[1].isdigit():
            # GitHub's Link headers use /repositories/{id}/...: the same operations as /repos/{owner}/{repo}/...
            alias = self.match(
                method, "/repos/{owner}/{repo}/" + "/".join(segs[2:]) if len(segs) > 2 else "/repos/{owner}/{repo}"
            )
            if alias:
                alias[1].update({"owner": "", "repo": "", "repository_id": segs[1]})
            return alias
        for pattern, names, op in self._ops.get(method.upper(), {}).get(len(segs), []):
            values: dict[str, str] = {}
            for seg, lit, name in zip(segs, pattern, names):
                if lit is None:
                    if seg == "":
                        break
                    values[name] = unquote(seg)
                elif lit != seg:
                    break
            else:
                return op, values
        return None

    def methods_for(self, path: str) -> list[str]:
        return [m for m in self._ops if self.match(m, path)]

    # -- validation

    def validator(self, ptr: str) -> jsonschema.protocols.Validator:
        v = self._validators.get(ptr)
        if v is None:
            with self._vlock:
                v = self._validators.get(ptr)
                if v is None:
                    v = self._validator_class(
                        {"$ref": f"{DOC_URI}#{ptr}"}, registry=self.registry, format_checker=_FORMATS
                    )
                    self._validators[ptr] = v
        return v

    def schema_errors(self, ptr: str, instance: Any, where: str, limit: int = 3) -> list[str]:
        v = self.validator(ptr)
        if v.is_valid(instance):
            return []
        errs = sorted(v.iter_errors(instance), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
        out = []
        for e in errs[:limit]:
            best, via = e, ""
            while best.context:  # oneOf/anyOf: say why the closest alternative failed
                branches: dict[Any, list[jsonschema.ValidationError]] = {}
                for sub in best.context:
                    branches.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else "?", []).append(
                        sub
                    )
                # the closest alternative: fewest errors, then the deepest one
                idx, subs = min(
                    branches.items(), key=lambda kv: (len(kv[1]), -max(len(s.absolute_path) for s in kv[1]))
                )
                ref = best.schema[best.validator][idx].get("$ref", "") if isinstance(idx, int) else ""
                via = f" (no {best.validator} alternative matched; closest: {ref.rsplit('/', 1)[-1] or idx})"
                best = max(subs, key=lambda s: len(s.absolute_path))
            loc = "/".join(str(p) for p in best.absolute_path)
            msg = best.message if len(best.message) <= 240 else best.message[:200] + " ... " + best.message[-40:]
            out.append(f"{where} at /{loc}: {msg}{via}")
        if len(errs) > limit:
            out.append(f"{where}: ... {len(errs) - limit} more")
        return out

    def validate_request(
        self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> tuple[Operation | None, dict[str, str], list[str]]:
        """Check one request: (operation or None if GitHub has none, its path parameters, errors)."""
        found = self.match(method, path)
        label = f"{method} {path}"
        if found is None:
            other = self.methods_for(path)
            why = (
                f"method not allowed (GitHub has {', '.join(other)})" if other else "no such path in GitHub's REST API"
            )
            return None, {}, [f"{label}: {why}"]
        op, path_values = found
        errors: list[str] = []
        for (loc, name), prm in op.parameters.items():
            if loc == "path":
                if name in path_values and path_values[name] != "":
                    errors += self._param_errors(prm, [path_values[name]], label)
            elif loc == "query":
                if name in query:
                    errors += self._param_errors(prm, query[name], label)
                elif prm.required:
                    errors.append(f"{label}: missing required query parameter {name!r}")
        known = {name for (loc, name) in op.parameters if loc == "query"}
        for name in query:
            if name not in known:
                errors.append(f"{label}: query parameter {name!r} is not defined for {op.operation_id}")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if body:
            if not op.body_ptrs:
                errors.append(f"{label}: {op.operation_id} takes no request body")
            else:
                media = ctype if ctype in op.body_ptrs else None
                if (
                    media is None
                    and "application/json" in op.body_ptrs
                    and ctype in ("", "application/json", "text/plain")
                ):
                    if ctype != "application/json":
                        errors.append(f"{label}: JSON body sent with content-type {ctype or 'missing'!r}")
                    media = "application/json"
                if media is None:
                    errors.append(f"{label}: content-type {ctype!r} is not one of {sorted(op.body_ptrs)}")
                elif media.endswith("json"):
                    try:
                        data = json.loads(body)
                    except ValueError as exc:
                        errors.append(f"{label}: request body is not JSON ({exc})")
                    else:
                        errors += self.schema_errors(op.body_ptrs[media], data, f"{label} request body")
        elif op.body_required:
            errors.append(f"{label}: {op.operation_id} requires a request body")
        return op, path_values, errors

    def _param_errors(self, prm: Parameter, raw: list[str], label: str) -> list[str]:
        if len(raw) > 1 and prm.schema.get("type") != "array":
            return [f"{label}: parameter {prm.name!r} given {len(raw)} times"]
        value: Any = raw[-1]
        t = prm.schema.get("type")
        t = t[0] if isinstance(t, list) else t
        try:
            if t == "integer":
                value = int(value)
            elif t == "number":
                value = float(value)
            elif t == "boolean":
                if value not in ("true", "false"):
                    raise ValueError(value)
                value = value == "true"
            elif t == "array":
                value = [v for r in raw for v in r.split(",")]
        except ValueError:
            return [f"{label}: {prm.location} parameter {prm.name!r}={raw[-1]!r} is not of type {t}"]
        return self.schema_errors(prm.schema_ptr, value, f"{label} {prm.location} parameter {prm.name!r}")

    def validate_response(
        self,
        op: Operation,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        injected: bool = False,
        method: str = "",
        path: str = "",
    ) -> list[str]:
        """Check one response to an operation; headers' names lower-case."""
        label = f"{op.method} {path or op.template} -> {status}"
        errors: list[str] = []
        declared = op.response_for(status)
        generic = status in GENERIC_STATUSES or (status == 304 and op.method == "GET")
        if declared is None and not generic and not injected:
            errors.append(
                f"{label}: status {status} is not declared for {op.operation_id} (declared: {', '.join(op.responses)})"
            )
        if status in (204, 304) or 100 <= status < 200:
            if body:
                errors.append(f"{label}: a {status} response must have no body")
            return errors
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if declared is None:
            declared = {"application/json": "/components/schemas/basic-error"}
        if not declared:
            if body and not injected:
                errors.append(f"{label}: no body is declared, but one was sent")
            return errors
        media = ctype if ctype in declared else None
        if media is None:
            errors.append(f"{label}: content-type {ctype!r} is not one of {sorted(declared)}")
            return errors
        if media.endswith("json"):
            try:
                data = json.loads(body)
            except ValueError as exc:
                return errors + [f"{label}: response body is not JSON ({exc})"]
            errors += self.schema_errors(declared[media], data, f"{label} response body")
        return errors


_LOCK = threading.Lock()
_CACHE: dict[str, OpenAPISpec] = {}


def load_spec(path: Path | None = None) -> OpenAPISpec:
    """The description, loaded once per process (it is 13 MB); fails with how to install it."""
    path = path or spec_path()
    key = str(path)
    with _LOCK:
        if key not in _CACHE:
            if not path.is_file():
                raise SpecMissing(
                    f"GitHub's OpenAPI description is missing: {path} does not exist. Run `bash .ci/run` "
                    f"(it installs @octokit/openapi@{SPEC_VERSION} into .ci/node), or set {SPEC_ENV} "
                    "to an api.github.com.json file."
                )
            _CACHE[key] = OpenAPISpec(path)
        return _CACHE[key]
