"""The Kubernetes 1.32 JSON-schema definitions behind kybern's models, and the kind -> model index.

The definitions are the subset the generator found reachable from the kinds kybern serves, in
kubernetes-validate's ``v1.32.0-local-strict`` ``$defs`` shape (refs ``#/$defs/NAME``), so the
x-kubernetes-patch-merge-key / -patch-strategy / -list-type / -list-map-keys hints that strategic
merge patch and server-side apply need are available without the test-only kubernetes-validate.
"""

from __future__ import annotations

import gzip
import importlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import msgspec

_DATA = Path(__file__).with_name("definitions.json.gz")

#: definition-name prefix -> model module (the same table the generator writes modules from)
PREFIXES: dict[str, str] = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.": "meta_v1",
    "io.k8s.api.core.v1.": "core_v1",
    "io.k8s.api.apps.v1.": "apps_v1",
    "io.k8s.api.batch.v1.": "batch_v1",
    "io.k8s.api.coordination.v1.": "coordination_v1",
    "io.k8s.api.discovery.v1.": "discovery_v1",
    "io.k8s.api.autoscaling.v1.": "autoscaling_v1",
    "io.k8s.api.policy.v1.": "policy_v1",
    "io.k8s.api.storage.v1.": "storage_v1",
    "io.k8s.api.events.v1.": "events_v1",
}
_MODULE_PREFIX = {module: prefix for prefix, module in PREFIXES.items()}


@cache
def definitions() -> dict[str, dict[str, Any]]:
    """All definitions, keyed like ``io.k8s.api.apps.v1.Deployment``.

    The dict is shared and cached: treat it as read-only.
    """
    with gzip.open(_DATA, "rb") as f:
        return json.loads(f.read())["$defs"]


@cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    # sorted so that io.k8s.api.* (the kinds) win over meta types listed under many groups
    for name in sorted(definitions()):
        for gvk in definitions()[name].get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


def definition_name(group: str, version: str, kind: str) -> str:
    """The definition name of a kind: ``("apps", "v1", "Deployment")`` -> ``io.k8s.api.apps.v1.Deployment``.

    Kinds outside the shipped subset get the name the Kubernetes OpenAPI document would use
    (``io.k8s.api.<first label of the group>.<version>.<kind>``), which ``definitions()`` lacks.
    """
    name = _gvk_index().get((group, version, kind))
    if name is not None:
        return name
    if group in ("", "core"):
        return f"io.k8s.api.core.{version}.{kind}"
    if group == "meta.k8s.io":
        return f"io.k8s.apimachinery.pkg.apis.meta.{version}.{kind}"
    return f"io.k8s.api.{group.split('.')[0]}.{version}.{kind}"


def model_by_name(name: str) -> type[msgspec.Struct]:
    """The generated model class of a definition name; KeyError if kybern has none."""
    for prefix, module in PREFIXES.items():
        if name.startswith(prefix):
            cls = getattr(importlib.import_module(f"kybern.models.{module}"), name[len(prefix) :], None)
            if isinstance(cls, type) and issubclass(cls, msgspec.Struct):
                return cls
            break
    raise KeyError(name)


def model_for(group: str, version: str, kind: str) -> type[msgspec.Struct]:
    """The model class of a kind (``("", "v1", "Pod")`` -> ``core_v1.Pod``); KeyError if unknown."""
    return model_by_name(definition_name(group, version, kind))


def name_of_model(model: type) -> str | None:
    """The definition name a generated model class was made from, or None for other classes."""
    module = model.__module__.rpartition(".")[2]
    prefix = _MODULE_PREFIX.get(module)
    if prefix is None or not model.__module__.startswith("kybern.models."):
        return None
    return prefix + model.__name__
