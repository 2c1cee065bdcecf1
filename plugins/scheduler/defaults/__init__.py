"""kube-scheduler's default plugins, one module (and one entry point) each.

Each module names itself with ``SCHEDULER_PLUGIN_NAME`` (kube's name) and implements some
``kybern_sched_*`` hooks; the scheduler calls them only when the pod's profile enables them.
"""
