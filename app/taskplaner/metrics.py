"""Prometheus metrics, in a registry per app instance (tests run several apps in one process)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .db import Database

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _StoreCollector(Collector):
    """Item counts and stored bytes, read from the database at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        items = GaugeMetricFamily(
            "taskplaner_items", "Items by type and task status.", labels=["type", "status"]
        )
        conn = self.db.conn
        for row in conn.execute(
            "SELECT type, coalesce(status, 'none'), count(*) FROM items GROUP BY 1, 2"
        ):
            items.add_metric([row[0], row[1]], row[2])
        yield items
        stored = conn.execute(
            "SELECT coalesce(sum(size), 0) FROM (SELECT DISTINCT hash, size FROM attachments)"
        ).fetchone()[0]
        yield GaugeMetricFamily(
            "taskplaner_attachment_stored_bytes",
            "Bytes of distinct attachment images in the blob store (thumbnails excluded).",
            value=stored,
        )


class Metrics:
    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        # process_*: memory, CPU, open files and the start time, which the dashboard shows
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests_total", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds", "HTTP request latency by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.search_seconds = Histogram(
            "taskplaner_search_duration_seconds", "Time to run one search query.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.http_refused = Counter(
            "taskplaner_http_refused_total",
            "Requests and connections refused before the app saw them, by reason"
            " (unauthorized, too_large, not_found, method_not_allowed, too_many_connections,"
            " header_timeout).",
            ["reason"], registry=self.registry,
        )
        self.upload_rejections = Counter(
            "taskplaner_upload_rejections_total", "Refused uploads by reason.",
            ["reason"], registry=self.registry,
        )
        self.upkeep_last_success = Gauge(
            "taskplaner_upkeep_last_success_timestamp_seconds",
            "When the server's daily upkeep (index merge, blob gc) last succeeded.",
            registry=self.registry,
        )
        self.upkeep_failures = Counter(
            "taskplaner_upkeep_failures_total", "Upkeep runs that failed (see the log).",
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(db))

    def upkeep_done(self, succeeded: bool) -> None:
        if succeeded:
            self.upkeep_last_success.set_to_current_time()
        else:
            self.upkeep_failures.inc()
