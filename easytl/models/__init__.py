"""Backbones (registry, packaged weights, adapters), heads, the network, and how it runs."""
