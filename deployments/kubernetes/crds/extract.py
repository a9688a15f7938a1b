"""Keeps the schemas of the custom resources the charts render (KEDA, the Prometheus operator,
cert-manager, CloudNativePG), so the test suite validates those objects offline as strictly as
the Kubernetes schemas validate the rest.

    python3 extract.py CRD.yaml… (the CustomResourceDefinitions of the versions in README.md)

writes one `<group>_<kind>_<version>.json` per served version: the openAPIV3Schema without its
descriptions (they are most of the size and none of the rules).
"""
import json
import sys
from pathlib import Path

import yaml


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(paths):
    for path in paths:
        for crd in yaml.safe_load_all(Path(path).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served"):
                    continue
                out = Path(__file__).parent / f"{group}_{kind}_{version['name']}.json"
                schema = strip(version["schema"]["openAPIV3Schema"])
                out.write_text(json.dumps({"apiVersion": f"{group}/{version['name']}", "kind": kind, "schema": schema},
                                          separators=(",", ":"), sort_keys=True) + "\n")
                print(out.name, out.stat().st_size)


if __name__ == "__main__":
    main(sys.argv[1:])
