"""The Terraform provider schemas, offline, from the jsii assemblies of the cdktf provider packages.

`terraform init` can't download providers here, so `terraform validate` can't run. The PyPI
packages `cdktf-cdktf-provider-<name>` ship each provider's full schema in a bundled jsii assembly:
every resource and data source has a `<Module>.<Class>Config` struct whose properties (camelCase,
with an `optional` flag) link to the Terraform attribute they stand for; nested blocks are structs
of their own. This module downloads the wheel once (PyPI is reachable), extracts a slim schema and
caches it as JSON in the git-ignored .cache/provider-schema/.

Slim schema: {"resource": {type: block}, "data": {type: block}}, block = {"required": [...],
"attributes": {name: block-or-null}}; null for a plain attribute, a block for a nested block.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from tests.support.locks import cache_lock

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "provider-schema"

# Pinned so the schema is reproducible: 21.22.1 carries the AWS provider 6.25.0.
PACKAGES = {
    "aws": ("cdktf-cdktf-provider-aws", "21.22.1"),
    "archive": ("cdktf-cdktf-provider-archive", "11.0.1"),
}
# Bump when extract() changes, so caches made by an older extract() are not reused.
SCHEMA_FORMAT = 2
DOC_LINK = re.compile(r"/docs/(resources|data-sources)/([a-z0-9_]+)(?:#([a-z0-9_]+))?")
PROVIDER_ATTR_SUMMARY = "Docs at Terraform Registry"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def attribute_name(prop: dict[str, Any]) -> str:
    docs = prop.get("docs", {})
    text = f"{docs.get('summary', '')} {docs.get('remarks', '')}"
    match = DOC_LINK.search(text)
    if match and match.group(3):
        return match.group(3)
    return snake(prop["name"])


def struct_fqn(type_ref: dict[str, Any], namespace: str) -> str | None:
    """The fqn of the provider struct a property holds (directly, in a list, or in a union)."""
    if "fqn" in type_ref:
        return type_ref["fqn"] if type_ref["fqn"].startswith(namespace) else None
    if "collection" in type_ref:
        return struct_fqn(type_ref["collection"]["elementtype"], namespace)
    if "union" in type_ref:
        for member in type_ref["union"]["types"]:
            found = struct_fqn(member, namespace)
            if found:
                return found
    return None


def block(types: dict[str, Any], fqn: str, namespace: str, depth: int = 0) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    required: list[str] = []
    for prop in types[fqn].get("properties", []):
        name = attribute_name(prop)
        nested = struct_fqn(prop["type"], namespace)
        is_struct = nested and types[nested].get("datatype") and depth < 12
        attributes[name] = block(types, nested, namespace, depth + 1) if is_struct else None
        if not prop.get("optional"):
            required.append(name)
    return {"required": sorted(required), "attributes": attributes}


def config_struct(spec: dict[str, Any]) -> str | None:
    """The fqn of a class's Config struct: the type of its constructor's `config` parameter.

    Mostly `<Class>Config`, but jsii renames one on a clash: wafv2_web_acl_association's is
    `Wafv2WebAclAssociationConfigA`, as wafv2WebAcl has a `Wafv2WebAclAssociationConfig` block.
    """
    for parameter in (spec.get("initializer") or {}).get("parameters", []):
        if parameter["name"] == "config":
            return parameter["type"].get("fqn")
    return None


def extract(assembly: dict[str, Any]) -> dict[str, Any]:
    types = assembly["types"]
    namespace = assembly["name"] + "."
    schema: dict[str, dict[str, Any]] = {"resource": {}, "data": {}}
    for spec in types.values():
        config = config_struct(spec)
        if spec.get("kind") != "class" or config not in types:
            continue
        match = DOC_LINK.search(spec.get("docs", {}).get("summary", ""))
        if not match:
            continue
        kind = "resource" if match.group(1) == "resources" else "data"
        provider = assembly["name"].split("provider-")[-1]
        type_name = f"{provider}_{match.group(2)}"
        schema[kind][type_name] = block(types, config, namespace)
    return schema


def download_assembly(package: str, version: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "-d",
                folder,
                f"{package}=={version}",
            ],
            check=True,
        )
        wheel = next(Path(folder).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(archive.read(name))) as tar:
                member = tar.extractfile("package/.jsii")
                assert member is not None
                return json.load(member)


def load(provider: str) -> dict[str, Any]:
    """The slim schema of one provider, extracted once and cached."""
    package, version = PACKAGES[provider]
    cached = CACHE / f"{package}-{version}-{SCHEMA_FORMAT}.json"
    with cache_lock("provider-schema"):
        if not cached.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            schema = extract(download_assembly(package, version))
            cached.write_text(json.dumps(schema, sort_keys=True))
    return json.loads(cached.read_text())
