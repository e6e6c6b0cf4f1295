"""Typed clients, one module per service: classifier, dedup, evaluator, reward, sampler."""
