"""kybern: a Kubernetes-style orchestrator a Python developer can read, extend and run.

Plugins implement hooks from :mod:`kybern.hookspecs` with :data:`hookimpl`.
"""

from kybern.hookspecs import hookimpl

__version__ = "0.1.0"
#: the Kubernetes API version kybern answers as (kube-apiserver's /version)
KUBERNETES_VERSION = "v1.32.0"

__all__ = ["KUBERNETES_VERSION", "__version__", "hookimpl"]
