"""Handlers decide: they hold the rules of each feature and call storage."""
