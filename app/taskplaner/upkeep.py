"""Upkeep while the server runs: keeps the search index merged and the blob store clean.

One daemon thread with its own connection. It runs shortly after start and then every
``interval`` seconds, and only when another connection committed since its last run: SQLite's
``PRAGMA data_version`` changes on a connection exactly when some other connection commits.
Each run merges the search index (``merge_search_index``) and removes what a crash left behind:
unreferenced blobs and stale upload temp files (``Attachments.gc``, with its grace period).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from . import logs
from .attachments import Attachments
from .db import Database, merge_search_index


class Upkeep:
    def __init__(self, db: Database, attachments: Attachments, interval: float,
                 first_delay: float = 600) -> None:
        self.db = db
        self.attachments = attachments
        self.interval = interval
        self.first_delay = first_delay
        self.runs = 0  # runs that did the work (not skipped for lack of writes)
        self.on_done: list[Callable[[bool], None]] = []  # callbacks(succeeded) for metrics
        self._seen: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """Do the upkeep if anything was written since the last run; True if it did."""
        version = self.db.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._seen:
            return False
        started = time.perf_counter()
        steps = merge_search_index(self.db)
        removed = self.attachments.gc()
        # The version read before the work: commits made meanwhile are handled next time.
        self._seen = version
        self.runs += 1
        logs.log(logging.INFO, "upkeep done", merge_steps=steps,
                 seconds=round(time.perf_counter() - started, 3), **removed)
        return True

    def _run_reporting(self) -> None:
        succeeded = True
        try:
            self.run_once()
        except Exception:  # upkeep must never take the server down; the metric tells
            logging.getLogger(logs.LOGGER_NAME).exception("upkeep failed")
            succeeded = False
        for callback in self.on_done:
            callback(succeeded)

    def _loop(self) -> None:
        delay = self.first_delay
        while not self._stop.wait(delay):
            self._run_reporting()
            delay = self.interval

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="upkeep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
