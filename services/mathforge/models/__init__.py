"""Offline tokenizers, model presets and checkpoint IO, shared by the trainers, the sampler and the
reward service."""
