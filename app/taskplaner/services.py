"""Wires settings to the services. The web layer and the CLI both start from ``open_services``."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .attachments import Attachments, UploadLimits
from .auth import Auth, LoginThrottle
from .blobs import BlobStore
from .config import Settings
from .db import Database, get_setting, set_setting
from .errors import AppError
from .images import ImageLimits
from .items import ItemLimits, Items
from .metrics import Metrics
from .planning import Planning
from .search import Search
from .tags import Tags
from .upkeep import Upkeep


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    attachments: Attachments
    items: Items
    tags: Tags
    search: Search
    auth: Auth
    metrics: Metrics
    planning: Planning
    transfer_lock: threading.Lock = field(default_factory=threading.Lock)  # one import at a time

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transfer(self) -> Iterator[None]:
        """One import at a time (a backup restore or a Markdown import); another gets 429."""
        if not self.transfer_lock.acquire(blocking=False):
            raise AppError(429, "busy", "an import is already running", headers={"Retry-After": "10"})
        try:
            yield
        finally:
            self.transfer_lock.release()

    def upkeep(self, interval: float, first_delay: float = 600) -> Upkeep:
        """The server's upkeep thread (not started), reporting to the metrics."""
        upkeep = Upkeep(self.db, self.attachments, interval, first_delay)
        upkeep.on_done.append(self.metrics.upkeep_done)
        return upkeep


def _secret_key(db: Database, configured: str | None) -> str:
    """The configured key, or one generated on first start and kept in the database."""
    if configured:
        return configured
    with db.write() as conn:
        key = get_setting(conn, "secret_key")
        if key is None:
            key = secrets.token_urlsafe(48)
            set_setting(conn, "secret_key", key)
    return key


def open_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_path, settings.sqlite_synchronous, settings.sqlite_cache_kib)
    db.migrate()
    blobs = BlobStore(settings.blob_dir, settings.tmp_dir)
    attachments = Attachments(
        db,
        blobs,
        UploadLimits(
            settings.max_upload_bytes, settings.max_parallel_uploads,
            ImageLimits(settings.max_image_pixels, settings.max_decode_bytes, settings.thumbnail_px),
        ),
    )
    auth = Auth(
        db,
        _secret_key(db, settings.secret_key),
        settings.session_days,
        LoginThrottle(settings.login_max_failures, settings.login_window_seconds),
    )
    metrics = Metrics(db)
    attachments.on_reject.append(lambda reason: metrics.upload_rejections.labels(reason).inc())
    search = Search(db, settings.max_query_chars, settings.max_query_terms, settings.max_ranked_matches)
    search.on_done.append(metrics.search_seconds.observe)
    items = Items(db, attachments, ItemLimits(settings.max_title_chars, settings.max_body_chars))
    return Services(
        settings=settings,
        db=db,
        blobs=blobs,
        attachments=attachments,
        items=items,
        tags=Tags(db),
        search=search,
        auth=auth,
        metrics=metrics,
        planning=Planning(db, items, attachments),
    )
