"""Re-make openai-openapi-subset.json from a full copy of OpenAI's spec (github.com/openai/openai-openapi).

Keeps the operations tinygpt serves and `ErrorResponse`, plus every component they reference (closed under
`$ref`), verbatim. Usage: python tests/web/data/vendor_openai_spec.py /path/to/openapi.json
Then update the commit in README.md. Not here: any edit of the schemas (tests/web/test_openai_spec.py reads
them as OpenAI's service behaves, in one marked place each).
"""
import json
import sys
from pathlib import Path

OPERATIONS = {"createChatCompletion", "createCompletion", "listModels", "retrieveModel"}
EXTRA = ("ErrorResponse",)
OUT = Path(__file__).parent / "openai-openapi-subset.json"


def subset(spec: dict) -> dict:
    paths = {}
    for path, ops in spec["paths"].items():
        keep = {m: op for m, op in ops.items() if isinstance(op, dict) and op.get("operationId") in OPERATIONS}
        if keep:
            paths[path] = keep
    comps: dict[str, dict] = {}

    def walk(node) -> None:
        if isinstance(node, list):
            for x in node:
                walk(x)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    _, _, section, name = value.split("/")
                    if name not in comps.setdefault(section, {}):
                        comps[section][name] = spec["components"][section][name]
                        walk(comps[section][name])
                else:
                    walk(value)

    walk(paths)
    for name in EXTRA:
        comps.setdefault("schemas", {})[name] = spec["components"]["schemas"][name]
        walk(comps["schemas"][name])
    return {"openapi": spec["openapi"], "info": spec["info"], "servers": spec.get("servers", []), "paths": paths,
            "components": {k: dict(sorted(v.items())) for k, v in sorted(comps.items())}}


if __name__ == "__main__":
    OUT.write_text(json.dumps(subset(json.loads(Path(sys.argv[1]).read_text())), indent=1) + "\n")
