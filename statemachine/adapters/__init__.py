"""Adapters: the concrete implementations of the ports (tracker, git, agents, processes)."""
