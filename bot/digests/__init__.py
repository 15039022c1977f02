"""Digests: rules and their due slots, subscriptions, the exactly-once runner and its clock."""
