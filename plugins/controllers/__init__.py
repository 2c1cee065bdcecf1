"""kybern's controller manager (kube-controller-manager) and its built-in controllers.

``manager`` is the ``controller-manager`` component: it campaigns for the
``kube-system/kube-controller-manager`` Lease and, while it holds it, runs every controller
plugins offer through ``kybern_controllers`` (minus those named in ``--disable``) on one set
of shared informers. Each controller module here is a plugin of its own (entry points
``replicaset``, ``deployment``); ``util`` and ``base`` hold what they share.
"""
