"""kybern's controller manager (kube-controller-manager) and its built-in controllers.

``manager`` is the ``controller-manager`` component: it campaigns for the
``kube-system/kube-controller-manager`` Lease and, while it holds it, runs every controller
plugins offer through ``kybern_controllers`` (minus those named in ``--disable``) on one set
of shared informers. Each controller module here is a plugin of its own (one entry point per
module: ``replicaset``, ``deployment``, ...); ``util`` and ``base`` hold what they share.

Writing a controller (the pattern every module here follows)::

    class FooController(base.QueueController):
        component = "foo-controller"            # events' source.component

        def __init__(self, ctx: ControllerContext) -> None:
            super().__init__(ctx)                # self.client, self.queue, self.recorder
            self.foos = ctx.informers.informer("foos.example.com")   # shared, cached
            self.foos.add_event_handler(on_add=self._enqueue, ...)    # handlers only enqueue

        async def sync(self, key: str) -> None:  # "namespace/name"; raise to retry later
            foo = self.foos.store.get(key)       # read the cache, write through self.client

    @hookimpl
    def kybern_controllers() -> list[ControllerSpec]:
        return [ControllerSpec(name="foo", factory=FooController)]

The manager builds controllers while leading, starts each once the informers it asked for
have synced, and cancels them when leadership is lost.
"""
