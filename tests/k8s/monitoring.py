"""What the chart's dashboards and alerts are checked against: the metric names the code really
exports, from live scrapes, and the metric names a PromQL expression reads.

`exported_names(text)` reads a Prometheus text exposition (a service's /metrics, or a trainer's
push to the Pushgateway) and returns every series name it defines, samples or not (a labelled
metric with no samples yet still has its # TYPE line). `promql_metric_names(expr)` returns the
metric names an expression selects; anything that is neither a PromQL function, aggregation or
keyword nor a label name counts as a metric name, so a misspelt function fails too.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

# Sample names a family of each type exposes (the exposition format's suffixes).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}

# PromQL functions, aggregations and keywords the dashboards and rules may use, and Grafana's
# label_values() of a template variable.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev",
    "rate", "irate", "increase", "delta", "changes", "resets", "deriv",
    "histogram_quantile", "time", "timestamp", "abs", "clamp_min", "clamp_max", "absent",
    "max_over_time", "min_over_time", "avg_over_time", "last_over_time",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "label_values",
}  # fmt: skip


def exported_names(exposition: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (or a Grafana `label_values(selector, label)` query)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    text = re.sub(r"\{[^{}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"label_values\(([^,()]*),[^)]*\)", r"label_values(\1)", text)  # drop the label
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables outside strings
    words = re.findall(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text)
    return {w for w in words if w not in PROMQL_WORDS}
