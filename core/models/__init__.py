"""Typed models of the Kubernetes objects kybern serves, one module per group-version.

The modules (``meta_v1``, ``core_v1``, ``apps_v1``, ...) are generated from the Kubernetes 1.32
OpenAPI schema by :mod:`kybern.models._generate`; :mod:`kybern.models.schema` gives the schema
itself and :mod:`kybern.models.codec` the JSON/YAML decoding the API server uses.
"""
