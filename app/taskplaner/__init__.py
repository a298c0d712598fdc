"""TaskPlaner: self-hosted notes and tasks on SQLite."""

__version__ = "0.1.0"
