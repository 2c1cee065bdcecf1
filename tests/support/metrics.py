"""The API server's request counters as tests and benchmarks read them from ``/metrics``."""

from __future__ import annotations


def request_counts(text: str) -> dict[str, float]:
    """``apiserver_request_total`` summed over codes: "VERB resource[/subresource]" -> count."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        pairs = (kv.split("=", 1) for kv in line[line.index("{") + 1 : line.rindex("}")].split(","))
        labels = {k: v.strip('"') for k, v in pairs}
        key = f"{labels.get('verb')} {labels.get('resource')}"
        if labels.get("subresource"):
            key += f"/{labels['subresource']}"
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def counter(text: str, name: str) -> float:
    """The value of an unlabelled counter sample (``name`` as exposed, e.g. ``..._total``)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
