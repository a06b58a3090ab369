"""Promotion: how a replica learns an alias moved (webhook, pub/sub, poll), warms, swaps, purges."""
