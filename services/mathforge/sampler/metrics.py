"""The sampler's own Prometheus metrics, beside the runtime's per-RPC ones."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mathforge.sampler.backend import Sample

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKENS_PER_S = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000)


class SamplerMetrics:
    """Tokens, requests, queue depth, time to first token, throughput and the weights version."""

    def __init__(
        self,
        registry: CollectorRegistry,
        queue_depth: Callable[[], float],
        weights_bytes: Callable[[], float],
    ):
        self.tokens = Counter(
            "mathforge_sampler_tokens_generated", "Completion tokens sampled", registry=registry
        )
        self.requests = Counter(
            "mathforge_sampler_requests", "Generate requests by result", ["result"], registry=registry
        )
        self.prompts = Counter("mathforge_sampler_prompts", "Prompts sampled", registry=registry)
        self.completions = Counter(
            "mathforge_sampler_completions",
            "Completions by finish reason",
            ["finish_reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "mathforge_sampler_queue_depth",
            "Prompts accepted and waiting for a decode batch",
            registry=registry,
        )
        self.queue_depth.set_function(queue_depth)
        self.first_token = Histogram(
            "mathforge_sampler_time_to_first_token_seconds",
            "From a request's admission to its first sampled token",
            buckets=_SECONDS,
            registry=registry,
        )
        self.tokens_per_second = Histogram(
            "mathforge_sampler_request_tokens_per_second",
            "Completion tokens per second of each request, admission to last token",
            buckets=_TOKENS_PER_S,
            registry=registry,
        )
        self.weights_version = Gauge(
            "mathforge_sampler_weights_version",
            "Version of the serving policy weights (the default line)",
            registry=registry,
        )
        # one series per named line, removed when the line is evicted: bounded by --max-lines
        self.line_version = Gauge(
            "mathforge_sampler_line_weights_version",
            "Version of each named policy line's weights",
            ["line"],
            registry=registry,
        )
        self.lines = Gauge("mathforge_sampler_lines", "Named policy lines held", registry=registry)
        self.line_evictions = Counter(
            "mathforge_sampler_line_evictions",
            "Named policy lines evicted to make room for another (--max-lines)",
            registry=registry,
        )
        self.weights_bytes = Gauge(
            "mathforge_sampler_weights_bytes",
            "Memory the policy weights of every line take (serving and standby copies)",
            registry=registry,
        )
        self.weights_bytes.set_function(weights_bytes)
        self.weight_loads = Counter(
            "mathforge_sampler_weight_loads", "LoadWeights calls by result", ["result"], registry=registry
        )
        self.load_seconds = Gauge(
            "mathforge_sampler_weights_load_seconds",
            "Duration of the last successful weight load",
            registry=registry,
        )
        self.load_bytes_per_second = Gauge(
            "mathforge_sampler_weights_load_bytes_per_second",
            "Read rate of the last successful weight load",
            registry=registry,
        )

    def observe_request(
        self, samples: list[Sample], prompts: int, admitted: float, first_token: float | None, finished: float
    ) -> None:
        tokens = sum(len(s.token_ids) for s in samples)
        self.requests.labels("ok").inc()
        self.prompts.inc(prompts)
        self.tokens.inc(tokens)
        for sample in samples:
            self.completions.labels(sample.finish_reason).inc()
        if first_token is not None:
            self.first_token.observe(max(0.0, first_token - admitted))
        if finished > admitted:
            self.tokens_per_second.observe(tokens / (finished - admitted))

    def loaded(self, line: str, version: int, seconds: float, size: int, lines: int) -> None:
        """A successful LoadWeights of `version` into `line`; `lines` named lines are now held."""
        self.weight_loads.labels("ok").inc()
        if line:
            self.line_version.labels(line).set(version)
        else:
            self.weights_version.set(version)
        self.lines.set(lines)
        self.load_seconds.set(seconds)
        self.load_bytes_per_second.set(size / seconds if seconds > 0 else 0)

    def evicted(self, line: str) -> None:
        self.line_evictions.inc()
        try:
            self.line_version.remove(line)
        except KeyError:
            pass
