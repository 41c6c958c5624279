"""A small checker of JSON values against the OpenAPI 3.0 schemas of docs/openapi.json (the subset
the document uses: $ref, allOf, type, nullable, required, properties, additionalProperties, items,
enum, minimum, maximum, maxLength). Stricter than the specification on one point, on purpose:
an object may only carry properties its schema documents (unless additionalProperties allows
more), so a field the daemon sends but the document does not describe fails the test."""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC_PATH = os.path.join(ROOT, "docs", "openapi.json")


def load_doc():
    with open(DOC_PATH) as f:
        return json.load(f)


def _resolve(doc, schema):
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema


def _props(doc, schema):
    """Documented property names of an object schema (through allOf), and whether others are
    allowed."""
    schema = _resolve(doc, schema)
    names, open_ = set(schema.get("properties", {})), schema.get("additionalProperties", False) not in (False, None)
    if "properties" not in schema and "allOf" not in schema and "additionalProperties" not in schema:
        open_ = True  # a bare {"type": "object"}: free-form
    for sub in schema.get("allOf", []):
        n, o = _props(doc, sub)
        names |= n
        open_ = open_ or o
    return names, open_


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def check(doc, value, schema, where="$", extras=True):
    """Returns a list of problems (empty when value matches schema). extras=False leaves the
    undocumented-property check to the caller (an allOf checks it over all its branches)."""
    schema = _resolve(doc, schema)
    errs = []
    if value is None:
        return [] if schema.get("nullable") else ["%s: null but not nullable" % where]
    for sub in schema.get("allOf", []):
        errs += check(doc, value, sub, where, extras=False)
    t = schema.get("type")
    if t in _TYPES and not isinstance(value, _TYPES[t]):
        return errs + ["%s: expected %s, got %r" % (where, t, type(value).__name__)]
    if t == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        return errs + ["%s: expected integer, got %r" % (where, value)]
    if t == "number" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        return errs + ["%s: expected number, got %r" % (where, value)]
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: %r not in %r" % (where, value, schema["enum"]))
    if "minimum" in schema and value < schema["minimum"] - 1e-6:
        errs.append("%s: %r < minimum %r" % (where, value, schema["minimum"]))
    if "maximum" in schema and value > schema["maximum"] + 1e-6:
        errs.append("%s: %r > maximum %r" % (where, value, schema["maximum"]))
    if "maxLength" in schema and isinstance(value, str) and len(value) > schema["maxLength"]:
        errs.append("%s: longer than %d" % (where, schema["maxLength"]))
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                errs.append("%s: required property %r missing" % (where, k))
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                errs += check(doc, value[k], sub, "%s.%s" % (where, k))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k in value:
                if k not in schema.get("properties", {}):
                    errs += check(doc, value[k], extra, "%s.%s" % (where, k))
        if extras and (t == "object" or "properties" in schema or "allOf" in schema):
            names, open_ = _props(doc, schema)
            if not open_:
                for k in value:
                    if k not in names:
                        errs.append("%s: property %r is not documented" % (where, k))
    if isinstance(value, list) and "items" in schema:
        for i, x in enumerate(value):
            errs += check(doc, x, schema["items"], "%s[%d]" % (where, i))
    return errs


def operation(doc, method, path):
    """The documented operation for a concrete path (templates like {id} match one segment)."""
    for tmpl, ops in doc["paths"].items():
        rx = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(tmpl)) + "$"
        if re.match(rx, path) and isinstance(ops.get(method.lower()), dict):
            return tmpl, ops[method.lower()]
    return None, None


def check_response(doc, method, path, response):
    """Problems of one real response against the document: the path, method and status must be
    documented, and a JSON body must match the status's schema."""
    tmpl, op = operation(doc, method, path)
    if op is None:
        return ["%s %s is not documented" % (method, path)]
    status = str(response.status_code)
    resp = op["responses"].get(status) or op["responses"].get("default")
    if resp is None:
        return ["%s %s: status %s is not documented (has %s)" % (method, tmpl, status, sorted(op["responses"]))]
    content = resp.get("content")
    if not content:
        return [] if not response.content else ["%s %s %s: a body where none is documented" % (method, tmpl, status)]
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip()
    if ctype not in content:
        return ["%s %s %s: Content-Type %s not documented (%s)" % (method, tmpl, status, ctype, sorted(content))]
    if ctype != "application/json":
        return []
    return ["%s %s %s: %s" % (method, tmpl, status, e)
            for e in check(doc, response.json(), content[ctype].get("schema", {}))]
