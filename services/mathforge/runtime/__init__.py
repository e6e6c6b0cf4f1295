"""Shared by every service: server bootstrap, health, metrics, limits, TLS, config, clients."""
