"""The Helm chart's values schema for the services' config fields, generated from their Config classes.

`services.<name>.config` in the chart's values becomes the service's ConfigMap, which its `Config`
parses at start; a key it does not know or a value of the wrong type would crash-loop the pod. This
module writes, into helm/mathforge/values.schema.json, one definition per service (`config-<name>`:
its fields, their JSON types and help) and one for `common.config` (the fields every service shares,
`ServiceConfig`), so `helm install` and `helm lint` refuse such values before anything runs. The
rest of the schema is written by hand and left as it is.

    python -m mathforge.runtime.schema           # rewrite the chart's schema
    python -m mathforge.runtime.schema --check   # exit 1 when the committed schema differs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from mathforge.runtime.config import ServiceConfig, _base_type
from mathforge.runtime.registry import SERVICES

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "helm" / "mathforge" / "values.schema.json"


def _json_type(tp: Any) -> dict[str, Any]:
    """The JSON schema of the values a field's coercion accepts from YAML."""
    base = _base_type(tp)
    origin = typing.get_origin(base)
    if base is bool:
        return {"type": "boolean"}
    if base is int:
        return {"type": "integer"}
    if base is float:
        return {"type": "number"}
    if base is str:
        # A YAML number given for a text field is taken as its text by the service.
        return {"type": ["string", "number"]}
    if origin is list:
        (item,) = typing.get_args(base) or (str,)
        return {"type": "array", "items": _json_type(item)}
    if origin is dict:
        _, value = typing.get_args(base) or (str, str)
        return {"type": "object", "additionalProperties": _json_type(value)}
    raise TypeError(f"no JSON schema for config type {tp!r}")


def config_schema(cls: type[ServiceConfig], description: str) -> dict[str, Any]:
    """An object schema of the dataclass's fields; any other key is refused."""
    hints = typing.get_type_hints(cls)
    properties = {
        f.name: {**_json_type(hints[f.name]), "description": f.metadata.get("help", "")}
        for f in dataclasses.fields(cls)
    }
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
    }


def generated_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its config definitions and references replaced by freshly generated ones."""
    schema = json.loads(json.dumps(schema))
    definitions = schema.setdefault("definitions", {})
    definitions["config-common"] = config_schema(
        ServiceConfig, "config fields every service has (mathforge.runtime.config.ServiceConfig)"
    )
    schema["properties"]["common"]["properties"]["config"] = {"$ref": "#/definitions/config-common"}
    services = schema["properties"]["services"]["properties"]
    for name, spec in SERVICES.items():
        cls = spec.load().Config
        definitions[f"config-{name}"] = config_schema(
            cls, f"the {name} service's config fields ({spec.module}.Config), merged over common.config"
        )
        services[name] = {
            "allOf": [
                {"$ref": "#/definitions/service"},
                {"properties": {"config": {"$ref": f"#/definitions/config-{name}"}}},
            ]
        }
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mathforge.runtime.schema", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH, help="the chart's values.schema.json")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when it differs")
    args = parser.parse_args(argv)
    current = args.schema.read_text()
    fresh = render(generated_schema(json.loads(current)))
    if args.check:
        if fresh != current:
            print(
                f"{args.schema}: the services' config fields changed; run python -m mathforge.runtime.schema",
                file=sys.stderr,
            )
            return 1
        return 0
    if fresh != current:
        args.schema.write_text(fresh)
        print(f"wrote {args.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
