"""Upkeep while the server runs: keeps the search index merged (see ``merge_search_index``).

One daemon thread with its own connection. It runs shortly after start and then every
``interval`` seconds, and only when another connection committed since its last run: SQLite's
``PRAGMA data_version`` changes on a connection exactly when some other connection commits.
"""

from __future__ import annotations

import logging
import threading
import time

from . import logs
from .db import Database, merge_search_index


class Maintenance:
    def __init__(self, db: Database, interval: float, first_delay: float = 600) -> None:
        self.db = db
        self.interval = interval
        self.first_delay = first_delay
        self.runs = 0  # merges done; read by tests and worth a log line each
        self._seen: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """Merge the index if anything was written since the last run; True if it merged."""
        version = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._seen:
            return False
        started = time.perf_counter()
        steps = merge_search_index(self.db)
        # The version read before merging: commits made meanwhile are merged next time.
        self._seen = version
        self.runs += 1
        logs.log(logging.INFO, "search index merged", steps=steps,
                 seconds=round(time.perf_counter() - started, 3))
        return True

    def _loop(self) -> None:
        delay = self.first_delay
        while not self._stop.wait(delay):
            try:
                self.run_once()
            except Exception:  # upkeep must never take the server down
                logging.getLogger(logs.LOGGER_NAME).exception("search index merge failed")
            delay = self.interval

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
