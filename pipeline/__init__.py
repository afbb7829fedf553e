"""Sluice's core: the steps that turn a claimed file into a stored document."""
