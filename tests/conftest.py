"""Shared pytest setup: nothing here starts a component; see each folder's conftest."""
