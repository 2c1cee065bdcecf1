"""The built-in API kinds (core/v1, apps/v1, batch/v1, coordination.k8s.io/v1, discovery.k8s.io/v1).

Each group-version module implements ``kybern_api_resources`` and returns
:class:`kybern.resources.ResourceType` objects carrying kube-apiserver's discovery data and per-kind
strategy: defaulting (``pkg/apis/*/v1/defaults.go`` plus the admission plugins that always run),
validation (``pkg/apis/*/validation``) and table printing (``pkg/printers/internalversion``).

The strategy functions work on the plain JSON form of an object (``msgspec.to_builtins``) because
Kubernetes' rules are written against optional, nested fields; defaulting writes the result back
into the model instance the API server handed over.
"""
