"""The default plugins against in-memory nodes and pods (the real plugin modules, loaded
through their entry points, driven by the real framework)."""

from __future__ import annotations

from collections import Counter

import pytest
from kybern.plugins.scheduler.framework import FitError, nodes_to_find
from kybern.scheduling import CycleState, NodeInfo, PodInfo, PostFilterResult, pod_requests, tolerates

from .helpers import node, one_profile, place, pod, profile, schedule

MOST = {"name": "NodeResourcesFit", "args": {"scoringStrategy": {"type": "MostAllocated"}}}


def fit_error(result: str | FitError) -> FitError:
    assert isinstance(result, FitError), f"expected no fit, got {result}"
    return result


def with_post_filter(prof, p: PodInfo, nodes: list[NodeInfo]) -> str:
    """The message the scheduler writes: filters, then preemption's verdict."""
    state = prof.new_state(nodes, None)
    fit = fit_error(prof.schedule(state, p, nodes, None))
    for _, fn in prof.points["postFilter"]:
        result = fn(state=state, pod=p, reasons=fit.reasons)
        assert isinstance(result, PostFilterResult)
        fit.post_filter_message = result.message
    return fit.message()


# --------------------------------------------------------------------------- requests


def test_pod_requests_sum_containers_and_take_the_largest_init_step() -> None:
    spec = {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "200m"}}},
        ],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}],
        "overhead": {"cpu": "10m"},
    }
    assert pod_requests(spec) == {"cpu": 1010, "memory": 64 * 2**20}


def test_sidecar_init_containers_add_to_the_running_total() -> None:
    spec = {
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}],
        "initContainers": [
            {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
            {"name": "init", "resources": {"requests": {"cpu": "600m"}}},
        ],
    }
    # running: 500m + 200m sidecar; init step: 200m sidecar + 600m = 800m
    assert pod_requests(spec) == {"cpu": 800}


# --------------------------------------------------------------------------- NodeResourcesFit


def test_resources_fit_reports_every_insufficient_resource_and_too_many_pods() -> None:
    prof = one_profile()
    nodes = [node("small", cpu="1", memory="1Gi"), node("full", pods=0)]
    fit = fit_error(schedule(prof, pod(cpu="2", memory="2Gi"), nodes))
    assert sorted(fit.reasons["small"]) == ["Insufficient cpu", "Insufficient memory"]
    assert fit.reasons["full"] == ["Too many pods"]


def test_extended_resources_must_be_allocatable() -> None:
    prof = one_profile()
    gpu = node("gpu", **{"example.com/gpu": "1"})
    plain = node("plain")
    p = pod()
    p.requests["example.com/gpu"] = 1
    assert schedule(prof, p, [gpu, plain]) == "gpu"
    place(prof, p, [gpu, plain])
    q = pod()
    q.requests["example.com/gpu"] = 1
    fit = fit_error(schedule(prof, q, [gpu, plain]))
    assert fit.reasons == {"gpu": ["Insufficient example.com/gpu"], "plain": ["Insufficient example.com/gpu"]}


def test_least_allocated_spreads_and_most_allocated_packs() -> None:
    spread = one_profile()
    nodes = [node(f"n{i}") for i in range(3)]
    used = Counter(place(spread, pod(cpu="500m", memory="512Mi"), nodes) for _ in range(6))
    assert sorted(used.values()) == [2, 2, 2]

    pack = one_profile(pluginConfig=[MOST])
    nodes = [node(f"n{i}") for i in range(3)]
    used = Counter(place(pack, pod(cpu="500m", memory="512Mi"), nodes) for _ in range(6))
    assert len(used) == 1


def test_burst_never_overcommits() -> None:
    prof = one_profile(pluginConfig=[MOST])
    nodes = [node("a", cpu="2"), node("b", cpu="3"), node("c", cpu="5")]
    placed = 0
    for _ in range(40):
        p = pod(cpu="300m")
        if isinstance(schedule(prof, p, nodes), str):
            place(prof, p, nodes)
            placed += 1
    for n in nodes:
        assert n.requested["cpu"] <= n.allocatable["cpu"]
    assert placed == 6 + 10 + 16


def test_requested_to_capacity_ratio_follows_the_shape() -> None:
    # score rises with utilisation: behaves like bin packing
    args = {
        "scoringStrategy": {
            "type": "RequestedToCapacityRatio",
            "resources": [{"name": "cpu", "weight": 1}],
            "requestedToCapacityRatio": {
                "shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]
            },
        }
    }
    prof = one_profile(pluginConfig=[{"name": "NodeResourcesFit", "args": args}])
    nodes = [node("a"), node("b")]
    first = place(prof, pod(cpu="1"), nodes)
    assert place(prof, pod(cpu="1"), nodes) == first


def test_zero_request_pods_still_spread_by_kube_defaults() -> None:
    prof = one_profile()
    nodes = [node("a"), node("b")]
    used = Counter(place(prof, pod(), nodes) for _ in range(4))
    assert sorted(used.values()) == [2, 2]


# --------------------------------------------------------------------------- NodeName, NodeUnschedulable


def test_node_name_and_cordoned_nodes() -> None:
    prof = one_profile()
    nodes = [node("a"), node("b", unschedulable=True)]
    fit = fit_error(schedule(prof, pod(nodeName="x"), nodes))
    assert fit.reasons["a"] == ["node(s) didn't match the requested node name"]
    for _ in range(3):
        assert schedule(prof, pod(), nodes) == "a"
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}])
    nodes[0].unschedulable = True
    assert schedule(prof, tolerant, nodes) in ("a", "b")
    assert fit_error(schedule(prof, pod(), nodes)).reasons == {
        "a": ["node(s) were unschedulable"],
        "b": ["node(s) were unschedulable"],
    }


# --------------------------------------------------------------------------- NodeAffinity


def test_node_selector_and_required_affinity() -> None:
    prof = one_profile()
    nodes = [
        node("ssd", labels={"disk": "ssd", "gen": "5"}),
        node("hdd", labels={"disk": "hdd", "gen": "3"}),
        node("bare"),
    ]
    assert schedule(prof, pod(nodeSelector={"disk": "ssd"}), nodes) == "ssd"

    def affinity(*exprs: dict, fields: list | None = None) -> dict:
        term: dict = {"matchExpressions": list(exprs)}
        if fields:
            term["matchFields"] = fields
        return {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }

    assert (
        schedule(prof, pod(affinity=affinity({"key": "gen", "operator": "Gt", "values": ["4"]})), nodes)
        == "ssd"
    )
    assert (
        schedule(prof, pod(affinity=affinity({"key": "gen", "operator": "Lt", "values": ["4"]})), nodes)
        == "hdd"
    )
    assert (
        schedule(prof, pod(affinity=affinity({"key": "disk", "operator": "DoesNotExist"})), nodes) == "bare"
    )
    p = pod(affinity=affinity({"key": "disk", "operator": "NotIn", "values": ["ssd"]}))
    assert schedule(prof, p, nodes) in ("hdd", "bare")
    by_field = affinity(fields=[{"key": "metadata.name", "operator": "In", "values": ["hdd"]}])
    assert schedule(prof, pod(affinity=by_field), nodes) == "hdd"
    fit = fit_error(schedule(prof, pod(nodeSelector={"disk": "nvme"}), nodes))
    assert fit.message() == "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def test_preferred_node_affinity_scores() -> None:
    prof = one_profile()
    nodes = [node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"})]
    preferred = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 50,
                    "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]},
                }
            ]
        }
    }
    for _ in range(3):
        assert place(prof, pod(cpu="100m", affinity=preferred), nodes) == "b"


# --------------------------------------------------------------------------- TaintToleration


def test_taints_and_tolerations() -> None:
    prof = one_profile()
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    nodes = [node("gpu", taints=[taint]), node("plain", cpu="0")]
    fit = fit_error(schedule(prof, pod(cpu="1"), nodes))
    assert fit.reasons["gpu"] == ["node(s) had untolerated taint {dedicated: gpu}"]
    equal = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert schedule(prof, pod(cpu="1", tolerations=equal), nodes) == "gpu"
    assert schedule(prof, pod(cpu="1", tolerations=[{"operator": "Exists"}]), nodes) == "gpu"
    wrong = [{"key": "dedicated", "operator": "Equal", "value": "tpu"}]
    assert isinstance(schedule(prof, pod(cpu="1", tolerations=wrong), nodes), FitError)
    assert (
        tolerates(
            [{"key": "k", "operator": "Exists", "effect": "NoExecute"}], {"key": "k", "effect": "NoSchedule"}
        )
        is False
    )


def test_prefer_no_schedule_lowers_the_score() -> None:
    prof = one_profile()
    nodes = [node("soft", taints=[{"key": "spot", "effect": "PreferNoSchedule"}]), node("clean")]
    for _ in range(4):
        assert place(prof, pod(cpu="100m"), nodes) == "clean"


def test_unschedulable_message_matches_kube_scheduler() -> None:
    prof = one_profile()
    nodes = [
        node("a", cpu="1"),
        node("b", cpu="1"),
        node("c", cpu="8", taints=[{"key": "key", "value": "value", "effect": "NoSchedule"}]),
    ]
    message = with_post_filter(prof, pod(cpu="2"), nodes)
    assert message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 Insufficient cpu. "
        "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
        "2 No preemption victims found for incoming pod."
    )
    never = pod(cpu="2", preemptionPolicy="Never")
    assert with_post_filter(prof, never, nodes).endswith(
        " preemption: not eligible due to preemptionPolicy=Never."
    )


# --------------------------------------------------------------------------- PodTopologySpread


def zones() -> list[NodeInfo]:
    return [
        node("a1", labels={"zone": "a"}),
        node("a2", labels={"zone": "a"}),
        node("b1", labels={"zone": "b"}),
        node("c1", labels={"zone": "c"}),
    ]


def spread(when: str = "DoNotSchedule", key: str = "zone", skew: int = 1) -> list[dict]:
    return [
        {
            "maxSkew": skew,
            "topologyKey": key,
            "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}},
        }
    ]


def test_topology_spread_keeps_zones_within_max_skew() -> None:
    prof = one_profile(pluginConfig=[MOST])  # packing would put everything on one node otherwise
    nodes = zones()
    zone_of = {n.name: n.labels["zone"] for n in nodes}
    placed = [
        zone_of[
            place(prof, pod(cpu="100m", labels={"app": "web"}, topologySpreadConstraints=spread()), nodes)
        ]
        for _ in range(9)
    ]
    assert Counter(placed) == {"a": 3, "b": 3, "c": 3}
    # unrelated pods do not count
    assert isinstance(
        schedule(prof, pod(labels={"app": "db"}, topologySpreadConstraints=spread()), nodes), str
    )


def test_topology_spread_filter_reasons() -> None:
    prof = one_profile()
    nodes = zones()[:3]  # zones a (2 nodes) and b
    for name in ("a1", "a2"):
        target = next(n for n in nodes if n.name == name)
        target.add_pod(pod(labels={"app": "web"}, node_name=name))
    nodes.append(node("nolabel"))
    # zone b is the only place within the skew
    web = pod(labels={"app": "web"}, topologySpreadConstraints=spread())
    assert schedule(prof, web, nodes) == "b1"
    # taints do not remove a domain (nodeTaintsPolicy Ignore): zone b still counts as empty
    nodes[2].taints = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    fit = fit_error(schedule(prof, web, nodes))
    assert fit.reasons == {
        "a1": ["node(s) didn't match pod topology spread constraints"],
        "a2": ["node(s) didn't match pod topology spread constraints"],
        "b1": ["node(s) had untolerated taint {k: v}"],
        "nolabel": ["node(s) didn't match pod topology spread constraints (missing required label)"],
    }
    # node affinity does remove domains (nodeAffinityPolicy Honor): within zone a alone the skew is 1
    only_a = pod(labels={"app": "web"}, topologySpreadConstraints=spread(), nodeSelector={"zone": "a"})
    assert schedule(prof, only_a, nodes) in ("a1", "a2")


def test_schedule_anyway_prefers_the_emptier_domain() -> None:
    prof = one_profile(pluginConfig=[MOST])
    nodes = zones()
    nodes[0].add_pod(pod(labels={"app": "web"}, node_name="a1"))
    nodes[2].add_pod(pod(labels={"app": "web"}, node_name="b1"))
    p = pod(cpu="100m", labels={"app": "web"}, topologySpreadConstraints=spread("ScheduleAnyway"))
    assert schedule(prof, p, nodes) == "c1"


# --------------------------------------------------------------------------- InterPodAffinity


def anti(key: str = "kubernetes.io/hostname", app: str = "web") -> dict:
    return {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}}
            ]
        }
    }


def test_required_anti_affinity_puts_one_per_node() -> None:
    prof = one_profile(pluginConfig=[MOST])
    nodes = [node("a"), node("b"), node("c")]
    used = [place(prof, pod(cpu="100m", labels={"app": "web"}, affinity=anti()), nodes) for _ in range(3)]
    assert sorted(used) == ["a", "b", "c"]
    fit = fit_error(schedule(prof, pod(labels={"app": "web"}, affinity=anti()), nodes))
    # the existing pods' own anti-affinity is checked first (symmetry)
    assert set(map(tuple, fit.reasons.values())) == {
        ("node(s) didn't satisfy existing pods anti-affinity rules",)
    }
    # a pod without the label is not affected by the term of the others... but its own term is
    fit = fit_error(schedule(prof, pod(labels={"app": "other"}, affinity=anti()), nodes))
    assert set(map(tuple, fit.reasons.values())) == {("node(s) didn't match pod anti-affinity rules",)}


def test_required_affinity_colocates_and_the_first_pod_may_go_anywhere() -> None:
    prof = one_profile()
    nodes = [node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"})]
    with_cache = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "cache"}}}
            ]
        }
    }
    # no cache pod yet, and the pod is not one itself: nowhere
    fit = fit_error(schedule(prof, pod(labels={"app": "web"}, affinity=with_cache), nodes))
    assert set(map(tuple, fit.reasons.values())) == {("node(s) didn't match pod affinity rules",)}
    # a self-matching first pod may go anywhere
    first = place(prof, pod(labels={"app": "cache"}, affinity=with_cache), nodes)
    for _ in range(3):
        assert place(prof, pod(cpu="1", labels={"app": "web"}, affinity=with_cache), nodes) == first


def test_preferred_anti_affinity_spreads() -> None:
    prof = one_profile(pluginConfig=[MOST])
    nodes = [node("a"), node("b")]
    soft = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app": "web"}},
                    },
                }
            ]
        }
    }
    used = {place(prof, pod(cpu="100m", labels={"app": "web"}, affinity=soft), nodes) for _ in range(2)}
    assert used == {"a", "b"}


# --------------------------------------------------------------------------- preemption, sorting


def test_preemption_picks_the_fewest_lowest_priority_victims() -> None:
    prof = one_profile()
    nodes = [node("a", cpu="2"), node("b", cpu="2")]
    nodes[0].add_pod(pod("a-low", cpu="1", priority=10, node_name="a"))
    nodes[0].add_pod(pod("a-mid", cpu="1", priority=100, node_name="a"))
    nodes[1].add_pod(pod("b-high", cpu="1", priority=500, node_name="b"))
    nodes[1].add_pod(pod("b-low", cpu="1", priority=5, node_name="b"))
    from kybern.plugins.scheduler.defaults.defaultpreemption import select

    incoming = pod(cpu="1", priority=1000)
    state = prof.new_state(nodes, None)
    fit = fit_error(prof.schedule(state, incoming, nodes, None))
    chosen, victims, _ = select(state, incoming, fit.reasons)
    # one victim is enough on either node; b's victim has the lower priority
    assert chosen == "b" and [v.name for v in victims] == ["b-low"]
    # equal priority never preempts
    peer = pod(cpu="1", priority=5)
    state = prof.new_state(nodes, None)
    fit = fit_error(prof.schedule(state, peer, nodes, None))
    assert select(state, peer, fit.reasons)[0] is None


def test_priority_sort_orders_the_queue() -> None:
    prof = one_profile()
    low, high = pod(priority=1), pod(priority=100)
    assert prof.sort_key(high) < prof.sort_key(low)


def test_percentage_of_nodes_to_score() -> None:
    assert nodes_to_find(50, None) == 50
    assert nodes_to_find(1000, None) == 420
    assert nodes_to_find(5000, None) == 500
    assert nodes_to_find(1000, 10) == 100
    assert nodes_to_find(1000, 100) == 1000


def test_filtering_rotates_over_nodes() -> None:
    prof = profile({"percentageOfNodesToScore": 10})
    nodes = [node(f"n{i:03d}") for i in range(300)]
    chosen = {place(prof, pod(cpu="100m"), nodes) for _ in range(20)}
    assert len(chosen) > 3  # not always the first 100 nodes' best


def test_cycle_state_args_reach_plugins() -> None:
    prof = one_profile(pluginConfig=[MOST])
    state = prof.new_state([], None)
    assert isinstance(state, CycleState)
    assert state.plugin_args("NodeResourcesFit")["scoringStrategy"]["type"] == "MostAllocated"


@pytest.mark.parametrize("disabled", [["*"], ["NodeResourcesFit"]])
def test_disabled_filters_are_not_called(disabled: list[str]) -> None:
    prof = one_profile(plugins={"filter": {"disabled": [{"name": d} for d in disabled]}})
    assert schedule(prof, pod(cpu="64"), [node("a", cpu="1")]) == "a"


def test_room_made_by_preemption_is_kept_for_the_nominated_pod() -> None:
    prof = one_profile()
    nodes = [node("a", cpu="2")]
    nodes[0].add_pod(pod("other", cpu="1", node_name="a"))
    preemptor = pod("high", cpu="1", priority=1000)
    nominated = {"a": [preemptor]}
    state = prof.new_state(nodes, None)
    low = pod("low", cpu="1", priority=0)
    assert isinstance(prof.schedule(state, low, nodes, None, nominated), FitError)
    # the nominated pod itself, and pods that outrank it, still fit
    assert prof.schedule(prof.new_state(nodes, None), preemptor, nodes, None, nominated) == "a"
    higher = pod("higher", cpu="1", priority=2000)
    assert prof.schedule(prof.new_state(nodes, None), higher, nodes, None, nominated) == "a"


def test_no_nodes_at_all() -> None:
    assert fit_error(schedule(one_profile(), pod(), [])).message() == "no nodes available to schedule pods"
