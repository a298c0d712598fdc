"""TaskPlaner benchmarks (not tests): each figure comes with a baseline measured in the same run.

    .venv/bin/python bench/run.py [--notes 100000]
        [--only create,search,memory,upload,upload-memory,import-memory,http,startup,image]

Prints one Markdown table row per benchmark, ready for the README's "Benchmarks" table, and
writes bench/results/latest.json. Targets (issue #4) are shown next to each figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from taskplaner import logs
from taskplaner.config import Settings
from taskplaner.db import merge_search_index
from taskplaner.services import Services, open_services

WORDS = (
    "garden plan report budget travel ticket kitchen recipe invoice meeting project idea "
    "book film music river mountain coffee bread window letter phone camera market school "
    "doctor bicycle battery server backup cluster network storage yellow purple orange "
    "quiet rapid gentle bright silver wooden paper glass stone winter summer autumn spring "
    "monday friday morning evening holiday birthday family friend neighbour garage").split()
RESULTS = Path(__file__).with_name("results")


SYLLABLES = ("ka ri to ne mu sa lo pe di ta ve ro mi na ku se la bo fi gu ho ja ze "
             "wa yu chi sho rin tel mar dor ven kal ost pru gan").split()
VOCABULARY_SIZE = 20_000


def vocabulary(size: int = VOCABULARY_SIZE) -> list[str]:
    """Real words first (the most frequent), then pronounceable made-up ones."""
    rng = random.Random(0)
    words = list(WORDS)
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choices(SYLLABLES, k=rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


VOCAB = vocabulary()
ZIPF_WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCAB))]  # word frequency as in real text


def zipf_words(rng: random.Random, n: int) -> list[str]:
    return rng.choices(VOCAB, ZIPF_WEIGHTS, k=n)


def query_word(rng: random.Random) -> str:
    """Rank drawn log-uniformly: ~1/4 of queries hit very common words, most are specific."""
    rank = int(math.exp(rng.uniform(0, math.log(len(VOCAB))))) - 1
    return VOCAB[min(rank, len(VOCAB) - 1)]


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def fresh(tmp: Path, name: str, **settings: Any) -> Services:
    return open_services(Settings(data_dir=tmp / name, sqlite_synchronous="NORMAL", **settings))


def bench_create(tmp: Path, n: int = 3000) -> dict[str, Any]:
    """Item creation through the service layer (FTS triggers on) vs a bare INSERT baseline."""
    rng = random.Random(1)
    services = fresh(tmp, "create")
    bodies = [" ".join(zipf_words(rng, 60)) for _ in range(n)]
    start = time.perf_counter()
    for i, body in enumerate(bodies):
        services.items.create({"title": f"note {i}", "body": body, "tags": ["bench"]})
    rate = n / (time.perf_counter() - start)
    conn = services.db.conn
    conn.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, title TEXT, body TEXT)")
    start = time.perf_counter()
    for i, body in enumerate(bodies):
        with services.db.write() as c:
            c.execute("INSERT INTO plain (title, body) VALUES (?, ?)", (f"note {i}", body))
    baseline = n / (time.perf_counter() - start)
    services.close()
    return {"name": "Item creation (service layer, FTS triggers on)", "value": f"{rate:,.0f}/s",
            "baseline": f"bare INSERT, one txn each: {baseline:,.0f}/s",
            "ratio": f"{rate / baseline:.2f}×", "target": "≥ 1,000/s", "ok": rate >= 1000}


def build_corpus(tmp: Path, notes: int) -> Services:
    rng = random.Random(2)
    services = fresh(tmp, "search")
    stamp = "2026-01-01T00:00:00.000Z"
    with services.db.write() as c:
        for _ in range(notes):
            title = " ".join(zipf_words(rng, 4))
            body = " ".join(zipf_words(rng, rng.randint(20, 120)))
            c.execute(
                "INSERT INTO items (type, title, body, tags_text, created, updated)"
                " VALUES ('note', ?, ?, ?, ?, ?)",
                (title, body, rng.choice(WORDS[:10]), stamp, stamp),
            )
    merge_search_index(services.db)  # the upkeep the server runs daily
    return services


def search_queries(n: int) -> list[str]:
    """60 % one word, 20 % two words, 20 % a 4-letter prefix."""
    rng = random.Random(3)
    queries = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.6:
            queries.append(query_word(rng))
        elif kind < 0.8:
            queries.append(f"{query_word(rng)} {query_word(rng)}")
        else:
            queries.append(f"{query_word(rng)[:4]}*")
    return queries


def bench_search(tmp: Path, notes: int, queries: int = 300) -> list[dict[str, Any]]:
    """Ranked search with snippets vs a LIKE '%term%' scan of the same rows; then the same
    corpus's size and the same searches over HTTP."""
    services = build_corpus(tmp, notes)
    chosen = search_queries(queries)
    samples = []
    for q in chosen:
        start = time.perf_counter()
        services.search.search(q, limit=20)
        samples.append(time.perf_counter() - start)
    like_samples = []
    conn = services.db.conn
    for q in chosen[:20]:
        term = q.split()[0].rstrip("*")
        start = time.perf_counter()
        # a scan has to read every row to find every match, as ranking needs all of them
        conn.execute("SELECT id FROM items WHERE title LIKE ?1 OR tags_text LIKE ?1"
                     " OR body LIKE ?1", (f"%{term}%",)).fetchall()
        like_samples.append(time.perf_counter() - start)
    p50, p95 = percentile(samples, 50) * 1000, percentile(samples, 95) * 1000
    like_p50 = statistics.median(like_samples) * 1000
    ok = p50 <= 5 and p95 <= 20 and like_p50 / p50 >= 50
    rows = [{"name": f"Search, {notes:,} notes (ranked, snippets)",
             "value": f"p50 {p50:.2f} ms · p95 {p95:.2f} ms",
             "baseline": f"LIKE '%…%' scan p50 {like_p50:.1f} ms",
             "ratio": f"{like_p50 / p50:.0f}× faster", "target": "p50 ≤ 5 ms, p95 ≤ 20 ms, ≥ 50×",
             "ok": ok}]
    rows.append(database_size(services, notes))
    rows.append(search_over_http(services, chosen))
    services.close()
    return rows


def database_size(services: Services, notes: int) -> dict[str, Any]:
    """The database file per note, against the text it holds (title, tags and body)."""
    conn = services.db.conn
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    text = conn.execute("SELECT sum(length(CAST(title || tags_text || body AS BLOB)))"
                        " FROM items").fetchone()[0]
    pages = {name: size for name, size in conn.execute(
        "SELECT name, sum(pgsize) FROM dbstat GROUP BY name")}
    words = sum(v for k, v in pages.items() if k.startswith("items_fts"))
    trigrams = sum(v for k, v in pages.items() if k.startswith("items_trigram"))
    size = services.settings.db_path.stat().st_size
    return {"name": f"Database size, {notes:,} notes",
            "value": f"{size / notes / 1000:.2f} KB per note ({size / 2**20:.0f} MiB: words index"
                     f" {words / 2**20:.0f}, trigram index {trigrams / 2**20:.0f})",
            "baseline": f"the text itself: {text / notes / 1000:.2f} KB per note",
            "ratio": f"{size / text:.1f}×", "target": "≤ 2.0 KB per note (#19)",
            "ok": size / notes <= 2000}


# A client in its own process, as a browser would be: one keep-alive connection, one search at
# a time; prints each request's seconds.
SEARCH_CLIENT = """
import http.client, json, sys, time, urllib.parse
port, token, queries = int(sys.argv[1]), sys.argv[2], json.load(sys.stdin)
conn = http.client.HTTPConnection("127.0.0.1", port)
times = []
for q in queries:
    started = time.perf_counter()
    conn.request("GET", "/api/v1/search?limit=20&q=" + urllib.parse.quote(q),
                 headers={"Authorization": "Bearer " + token})
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def pinned_server(services: Services, app: Any = None) -> tuple[Any, set[int], set[int] | None]:
    """The app's server in a thread, with every thread it starts on the first core: (server,
    that core, the cores left for a client, or None on one core). One waitress process cannot
    use a second core (GIL), and sharing both with the client made its throughput jump between
    two levels from run to run."""
    from taskplaner.web.server import create_server

    cores = set(os.sched_getaffinity(0))
    server_core = {min(cores)}
    os.sched_setaffinity(0, server_core)  # threads started from here on inherit it
    server = create_server(services, "127.0.0.1", 0, app)
    threading.Thread(target=server.run, daemon=True).start()
    os.sched_setaffinity(0, cores)
    return server, server_core, (cores - server_core) or None


def on_cores(cores: set[int] | None) -> Any:
    """A subprocess ``preexec_fn`` that runs the child on ``cores`` (None: anywhere)."""
    return (lambda: os.sched_setaffinity(0, cores)) if cores else None


def search_over_http(services: Services, queries: list[str], rounds: int = 3) -> dict[str, Any]:
    """The same searches through ``taskplaner serve``'s server (a client process on the other
    core) and in-process on one connection, in alternating rounds."""
    token = services.auth.create_token("bench-search")["token"]
    server, server_core, client_cores = pinned_server(services)
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, server_core)  # in-process searches on the server's core too

    def over_http(batch: list[str]) -> list[float]:
        out = subprocess.run(
            [sys.executable, "-c", SEARCH_CLIENT, str(server.effective_port), token],
            input=json.dumps(batch), capture_output=True, text=True, check=True,
            preexec_fn=on_cores(client_cores))
        return list(json.loads(out.stdout))

    def in_process(batch: list[str]) -> list[float]:
        times = []
        for q in batch:
            started = time.perf_counter()
            services.search.search(q, limit=20)
            times.append(time.perf_counter() - started)
        return times

    over_http(queries[:50]), in_process(queries[:50])  # every connection warm
    http_times: list[float] = []
    local_times: list[float] = []
    for _ in range(rounds):
        http_times += over_http(queries)
        local_times += in_process(queries)
    server.task_dispatcher.shutdown()
    server.close()
    os.sched_setaffinity(0, cores)
    http_p50, local_p50 = percentile(http_times, 50) * 1000, percentile(local_times, 50) * 1000
    ratio = http_p50 / local_p50
    return {"name": "Search over HTTP (`GET /api/v1/search`, one client, keep-alive)",
            "value": f"p50 {http_p50:.2f} ms · p95 {percentile(http_times, 95) * 1000:.2f} ms",
            "baseline": f"the same searches in-process: p50 {local_p50:.2f} ms",
            "ratio": f"{ratio:.2f}×", "target": "≤ 1.5×", "ok": ratio <= 1.5}


def twelve_megapixel_jpeg(rotate: bool) -> bytes:
    rng = random.Random(4)
    img = Image.new("RGB", (4000, 3000))
    for _ in range(400):  # rough photo-like content so the encoder has real work
        x, y = rng.randrange(4000), rng.randrange(3000)
        img.paste((rng.randrange(256), rng.randrange(256), rng.randrange(256)),
                  (x, y, min(4000, x + rng.randint(50, 900)), min(3000, y + rng.randint(50, 700))))
    exif = Image.Exif()
    exif[0x0112] = 6 if rotate else 1
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def bench_upload(tmp: Path, runs: int = 5) -> dict[str, Any]:
    """Upload pipeline for a 12 MP JPEG vs just decoding it with Pillow."""
    services = fresh(tmp, "upload")
    item = services.items.create({"title": "photos"})
    results = {}
    for rotate in (False, True):
        data = twelve_megapixel_jpeg(rotate)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            services.attachments.add(item["id"], "p.jpg", io.BytesIO(data))
            times.append(time.perf_counter() - start)
        tracemalloc.start()  # a separate run: tracing slows every allocation
        services.attachments.add(item["id"], "p.jpg", io.BytesIO(data))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        results[rotate] = (statistics.median(times), peak)
    decode = []
    sample = twelve_megapixel_jpeg(False)
    for _ in range(runs):
        start = time.perf_counter()
        Image.open(io.BytesIO(sample)).load()
        decode.append(time.perf_counter() - start)
    services.close()
    upright, rotated = results[False][0] * 1000, results[True][0] * 1000
    decode_ms = statistics.median(decode) * 1000
    peak_mib = max(results[False][1], results[True][1]) / 2**20
    return {"name": "Upload 12 MP JPEG (verify, orient, strip, thumbnail, store)",
            "value": f"upright {upright:.0f} ms · rotated {rotated:.0f} ms · peak {peak_mib:.0f} MiB",
            "baseline": f"Pillow full decode only: {decode_ms:.0f} ms",
            "ratio": f"{upright / decode_ms:.2f}× / {rotated / decode_ms:.2f}×",
            "target": "≤ 300 ms", "ok": max(upright, rotated) <= 300}


def bench_http(tmp: Path, seconds: int = 5, rounds: int = 5) -> dict[str, Any]:
    """GET /api/v1/items?limit=50 vs the same response bytes served as a static body by the
    same server (one more route, through the same auth, plugin and access log), 64
    connections (wrk). The ratio is the share of the server's time the list's own work leaves:
    1.0 would mean the query, the items and their JSON cost nothing.

    The server gets one core and wrk another (``pinned_server``). Both are measured in
    alternating rounds; medians and ranges are reported.
    """
    if not shutil.which("wrk"):
        return {"name": "HTTP list vs the same bytes static", "value": "wrk not installed",
                "baseline": "", "ratio": "", "target": "≥ 0.5", "ok": False}
    import bottle

    from taskplaner.web import create_app

    # wrk is one client with 64 connections, reopened between rounds: above the per-client cap
    services = fresh(tmp, "http", max_connections_per_client=1000)
    for i in range(200):
        services.items.create({"title": f"n{i}", "body": "some text " * 20, "tags": ["a", "b"]})
    token = services.auth.create_token("bench")["token"]
    app = create_app(services)
    listed = json.dumps(services.items.list(limit=50), ensure_ascii=False).encode()

    @app.get("/bench/static")
    def static_copy() -> bytes:
        bottle.response.content_type = "application/json"
        return listed

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # 64 clients > 8 threads: expected
    server, _, client_cores = pinned_server(services, app)
    base = f"http://127.0.0.1:{server.effective_port}"

    def wrk(path: str) -> tuple[float, int]:
        out = subprocess.run(
            ["wrk", "-t2", "-c64", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}",
             base + path], capture_output=True, text=True, timeout=seconds + 30,
            preexec_fn=on_cores(client_cores),
        ).stdout
        rps = float(out.split("Requests/sec:")[1].split()[0])
        errors = 0
        for line in out.splitlines():
            if "Non-2xx" in line or "Socket errors" in line:
                errors += sum(int(tok) for tok in line.replace(",", " ").split() if tok.isdigit())
        return rps, errors

    static, listing, errors = [], [], 0
    for _ in range(rounds):
        for path, samples in (("/bench/static", static), ("/api/v1/items?limit=50", listing)):
            rps, failed = wrk(path)
            samples.append(rps)
            errors += failed
    server.task_dispatcher.shutdown()  # let queued requests finish before closing the database
    server.close()
    services.close()
    list_rps, static_rps = statistics.median(listing), statistics.median(static)
    share = list_rps / static_rps
    placement = "server on 1 core, wrk on another" if client_cores else "1 core shared"
    return {"name": f"HTTP GET /api/v1/items?limit=50 ({len(listed) // 1024} KiB), 64 connections"
                    f" ({placement})",
            "value": f"{list_rps:,.0f} req/s ({min(listing):,.0f}–{max(listing):,.0f}),"
                     f" {errors} errors",
            "baseline": f"the same bytes as a static body: {static_rps:,.0f} req/s "
                        f"({min(static):,.0f}–{max(static):,.0f})",
            "ratio": f"{share:.2f}", "target": "≥ 0.5, 0 errors",
            "ok": share >= 0.5 and errors == 0}


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve, so a child would report its
# parent's peak.
MEASURE_ONE = """
import json, sys, tempfile
from pathlib import Path
from taskplaner import images
from taskplaner.config import Settings
s = Settings()
path = Path(sys.argv[1])
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
before = hwm()
with tempfile.TemporaryFile() as out:
    images.process(path, out, images.ImageLimits(s.max_image_pixels, s.max_decode_bytes, s.thumbnail_px))
print(json.dumps({"before": before, "peak": hwm()}))
"""


def worst_accepted_images(tmp: Path) -> dict[str, Path]:
    """For each format, about the largest image (within 5 %) that the default limits accept:
    images.py's decode estimate within TASKPLANER_MAX_DECODE_BYTES, and the pixel limit."""
    from taskplaner import images
    from taskplaner.config import Settings

    settings = Settings()
    rng = random.Random(5)

    def picture(w: int, h: int, mode: str) -> Image.Image:
        small = Image.effect_noise((w // 16, h // 16), 50).convert("RGB")  # photo-like blocks
        img = small.resize((w, h), Image.Resampling.BILINEAR)
        for _ in range(40):
            x, y = rng.randrange(w), rng.randrange(h)
            img.paste((rng.randrange(256), rng.randrange(256), 0), (x, y, x + w // 20, y + h // 20))
        return img.convert(mode)

    plans = {
        "JPEG (baseline)": ("RGB", "JPEG", {"quality": 85}),
        "JPEG (progressive)": ("RGB", "JPEG", {"quality": 85, "progressive": True}),
        "PNG (RGB)": ("RGB", "PNG", {"compress_level": 1}),
        "PNG (RGBA)": ("RGBA", "PNG", {"compress_level": 1}),
        "GIF": ("P", "GIF", {}),
        "WebP": ("RGB", "WEBP", {"quality": 80}),
    }
    paths = {}
    for name, (mode, fmt, options) in plans.items():
        path = tmp / (name.replace(" ", "_").replace("(", "").replace(")", "") + "." + fmt.lower())
        width = int((settings.max_image_pixels * 3 / 2) ** 0.5 * 0.99)  # 3:2, at the pixel limit
        while True:
            picture(width, width * 2 // 3, mode).save(path, fmt, **options)
            with Image.open(path) as img:
                if images.decode_bytes(img, settings.thumbnail_px) <= settings.max_decode_bytes:
                    break
            width = int(width * 0.95)
        paths[name] = path
    return paths


def bench_upload_memory(tmp: Path) -> list[dict[str, Any]]:
    """Peak memory of processing the worst image each format may send at the default limits
    (a fresh process each), then two of the worst at once through a real server, against the
    chart's memory limit."""
    from taskplaner.config import Settings

    settings = Settings()
    images_dir = tmp / "worst"
    images_dir.mkdir()
    paths = worst_accepted_images(images_dir)
    rows, used = [], {}
    for name, path in paths.items():
        run = subprocess.run([sys.executable, "-c", MEASURE_ONE, str(path)], capture_output=True,
                             text=True, check=True)
        figures = json.loads(run.stdout)
        used[name] = (figures["peak"] - figures["before"]) / 1024
        with Image.open(path) as img:
            pixels = img.width * img.height
        rows.append(f"{name} {pixels / 1e6:.0f} Mpx: {used[name]:.0f} MiB")
    budget = settings.max_decode_bytes / 2**20
    per_format = {"name": "Upload memory per format, worst accepted image (fresh process each)",
                  "value": " · ".join(rows),
                  "baseline": f"decode budget TASKPLANER_MAX_DECODE_BYTES: {budget:.0f} MiB",
                  "ratio": f"≤ {max(used.values()) / budget:.2f}× the budget",
                  "target": "≤ 1.0× the budget", "ok": max(used.values()) <= budget}
    heaviest = sorted(used, key=used.get, reverse=True)[:2]  # type: ignore[arg-type]
    peak, idle = two_uploads_at_once(tmp, [paths[n] for n in heaviest])
    limit = chart_memory_limit_mib()
    together = {"name": f"Two worst uploads at once ({' + '.join(heaviest)}), server process",
                "value": f"peak RSS {peak:.0f} MiB", "baseline": f"idle after start: {idle:.0f} MiB"
                f"; chart memory limit {limit:.0f} MiB", "ratio": f"{peak / limit:.2f} of the limit",
                "target": "< 1.0 of the limit", "ok": peak < limit}
    return [per_format, together]


def bench_import_memory(tmp: Path, rows: int = 1_000_000) -> dict[str, Any]:
    """Peak memory of each import path given its worst shape (bench/archives.py), a fresh
    server each, against the server's own size once warm; budget +64 MiB (README "Limits")."""
    import archives
    import requests

    budget = 64.0
    figures, ok, idles = [], True, []
    for name, shape in archives.SHAPES.items():
        folder = tmp / f"import-{len(figures)}"
        folder.mkdir()
        archive = shape.build(folder, rows)
        with serving(folder / "data") as (server, base, headers):
            requests.post(base + archives.RESTORE, data=archives.small_restore(), timeout=60,
                          headers={**headers, "Content-Type": archives.GZIP})
            requests.post(base + archives.MARKDOWN, timeout=60,
                          data=archives.zip_bytes({"a.md": "# a\n"}),
                          headers={**headers, "Content-Type": archives.ZIP})
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # the peak counts from here
            idle = _status_mib(server.pid, "VmRSS")
            started = time.perf_counter()
            with archive.open("rb") as fh:
                res = requests.post(base + shape.route, data=fh, timeout=600,
                                    headers={**headers, "Content-Type": shape.content_type})
            seconds = time.perf_counter() - started
            grown = _status_mib(server.pid, "VmHWM") - idle
        ok = ok and res.status_code == shape.status and grown <= budget
        idles.append(idle)
        figures.append(f"{name}: +{grown:.0f} MiB, {res.status_code} in {seconds:.1f} s")
        shutil.rmtree(folder)
    worst = max(float(f.split("+")[1].split(" ")[0]) for f in figures)
    return {"name": f"Import memory, worst shape of each path ({rows:,} rows where rows count;"
                    " fresh server each, VmHWM)",
            "value": " · ".join(figures),
            "baseline": f"the server warm, before the import: {statistics.median(idles):.0f} MiB",
            "ratio": f"worst +{worst:.0f} MiB = {worst / budget:.2f} of the budget",
            "target": "≤ +64 MiB each, the answer as expected", "ok": ok}


def chart_memory_limit_mib() -> float:
    values = (Path(__file__).parent.parent / "app" / "chart" / "values.yaml").read_text()
    limit = values.split("limits:", 1)[1].split("memory:", 1)[1].split("}")[0].strip()
    return float(limit.removesuffix("Mi"))


@contextlib.contextmanager
def serving(data: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, str]]]:
    """``taskplaner serve`` on ``data`` as its own process, answering: (process, base URL,
    headers with an API token)."""
    import requests

    env = {**os.environ, "TASKPLANER_DATA_DIR": str(data), "TASKPLANER_PASSWORD": "bench-password",
           "TASKPLANER_PORT": str(free_port())}
    exe = str(Path(sys.executable).with_name("taskplaner"))
    token = subprocess.run([exe, "token", "create", "bench"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    server = subprocess.Popen([exe, "serve"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{env['TASKPLANER_PORT']}"
    try:
        for _ in range(100):
            try:
                requests.get(base + "/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield server, base, {"Authorization": f"Bearer {token}"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def two_uploads_at_once(tmp: Path, paths: list[Path]) -> tuple[float, float]:
    """Start ``taskplaner serve``, upload the files at once, return (peak, idle) RSS in MiB."""
    import requests

    with serving(tmp / "served") as (server, base, headers):
        item = requests.post(base + "/api/v1/items", json={"title": "x"}, headers=headers,
                             timeout=10).json()
        idle = _status_mib(server.pid, "VmHWM")
        threads = [threading.Thread(target=requests.post, args=(
            f"{base}/api/v1/items/{item['id']}/attachments",),
            kwargs={"files": {"file": (p.name, p.read_bytes())}, "headers": headers, "timeout": 120})
            for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return _status_mib(server.pid, "VmHWM"), idle


def bench_memory(tmp: Path, notes: int, clients: int = 8, rounds: int = 150) -> dict[str, Any]:
    """``taskplaner serve`` on the search corpus: RSS after ``clients`` threads each searched
    and listed ``rounds`` times, against its RSS when idle after start."""
    import requests

    data = tmp / "search"
    if not data.exists():
        build_corpus(tmp, notes).close()
    with serving(data) as (server, base, headers):
        idle = _status_mib(server.pid, "VmRSS")
        # the peak from here on: the start's own (hashing TASKPLANER_PASSWORD) is not the work's
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
        queries = search_queries(rounds)

        def work() -> None:
            with requests.Session() as session:
                for q in queries:
                    session.get(base + "/api/v1/search", params={"q": q}, headers=headers,
                                timeout=60).raise_for_status()
                    session.get(base + "/api/v1/items?limit=50", headers=headers,
                                timeout=60).raise_for_status()

        threads = [threading.Thread(target=work) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after, peak = _status_mib(server.pid, "VmRSS"), _status_mib(server.pid, "VmHWM")
    return {"name": f"Memory: `taskplaner serve`, {notes:,} notes, after {clients} clients each"
                    f" searched and listed {rounds} times",
            "value": f"RSS {after:.1f} MiB (peak {peak:.1f})",
            "baseline": f"idle after start: {idle:.1f} MiB", "ratio": f"{after / idle:.2f}×",
            "target": "≤ 45 MiB", "ok": after <= 45}


# What any server on this stack imports before it can answer: the web framework, the WSGI
# server, the metrics library and SQLite.
FRAMEWORK_FLOOR = "import bottle, waitress.server, prometheus_client, sqlite3"


def bench_startup(tmp: Path, runs: int = 9) -> dict[str, Any]:
    """``taskplaner serve`` on an existing data folder (a restart, as after an upgrade or a
    reboot) until the first 200 on /healthz, vs the same Python importing only the libraries
    every such server needs. Medians of alternating runs; bytecode cached, as in the image."""

    env = {**os.environ, "TASKPLANER_DATA_DIR": str(tmp / "startup"),
           "TASKPLANER_PASSWORD": "bench-password"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    exe = str(Path(sys.executable).with_name("taskplaner"))
    subprocess.run([exe, "check"], env=env, capture_output=True, check=True)  # creates the folder

    def serve() -> float:
        port = free_port()
        started = time.perf_counter()
        server = subprocess.Popen([exe, "serve"], env={**env, "TASKPLANER_PORT": str(port)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return _until_healthy(port, started)
        finally:
            server.terminate()
            server.wait(timeout=30)

    def python(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        return time.perf_counter() - started

    serve(), python(FRAMEWORK_FLOOR)  # bytecode written, caches warm
    starts, floors, bare = [], [], []
    for _ in range(runs):
        starts.append(serve())
        floors.append(python(FRAMEWORK_FLOOR))
        bare.append(python("pass"))
    start, floor = statistics.median(starts), statistics.median(floors)
    return {"name": "Start-up: `taskplaner serve` (existing data) to the first 200 on `/healthz`",
            "value": f"{start * 1000:.0f} ms ({min(starts) * 1000:.0f}–{max(starts) * 1000:.0f})",
            "baseline": f"importing bottle, waitress, prometheus_client and sqlite3 only: "
                        f"{floor * 1000:.0f} ms (`python -c pass`: {statistics.median(bare) * 1000:.0f} ms)",
            "ratio": f"{start / floor:.2f}×", "target": "≤ 1.6× the floor",
            "ok": start / floor <= 1.6}


def bench_image(runs: int = 5) -> list[dict[str, Any]]:
    """The image as scripts/image.sh builds it: its size against its base's, and a container's
    start to the first 200 on /healthz against the same container running `python -c pass`."""

    root = Path(__file__).resolve().parents[1]
    tag = "localhost/taskplaner:bench"
    subprocess.run([root / "scripts/image.sh", "build", tag], check=True, capture_output=True)
    engine = subprocess.run([root / "scripts/image.sh", "engine"], capture_output=True, text=True,
                            check=True).stdout.strip()
    conf = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "taskplaner-image/containers.conf"
    env = {**os.environ, **({"CONTAINERS_CONF": str(conf)} if conf.exists() else {})}

    def podman(*args: str) -> str:
        return subprocess.run([engine, *args], capture_output=True, text=True, env=env,
                              check=True).stdout.strip()

    base = next(line.split()[1] for line in (root / "app/Dockerfile").read_text().splitlines()
                if line.startswith("FROM "))
    base = base if "/" in base else f"docker.io/library/{base}"
    size, base_size = (int(podman("image", "inspect", "--format", "{{.Size}}", name)) / 1e6
                       for name in (tag, base))
    stand_in = podman("image", "inspect", "--format",
                      '{{ index .Config.Labels "org.taskplaner.base" }}', base) == "debian-packages"

    def start() -> float:
        port = free_port()
        started = time.perf_counter()
        name = podman("run", "-d", "--read-only", "-p", f"127.0.0.1:{port}:8080",
                      "-e", "TASKPLANER_PASSWORD=bench-password", tag)
        try:
            return _until_healthy(port, started)
        finally:
            podman("rm", "-f", "-v", name)  # with its anonymous /data volume

    def bare() -> float:
        started = time.perf_counter()
        podman("run", "--rm", "--entrypoint", "python", tag, "-c", "pass")
        return time.perf_counter() - started

    starts, floors = [], []
    for _ in range(runs):
        starts.append(start())
        floors.append(bare())
    cold, floor = statistics.median(starts), statistics.median(floors)
    base_name = "Debian-package stand-in base" if stand_in else "base"
    return [
        {"name": f"Image size (`scripts/image.sh build`, {engine})",
         "value": f"{size:.0f} MB", "baseline": f"its {base_name} {base}: {base_size:.0f} MB",
         "ratio": f"+{size - base_size:.0f} MB", "target": "the app's layers ≤ 60 MB over the base",
         "ok": size - base_size <= 60},
        {"name": "Cold start: container start (read-only, fresh volume) to the first 200 on `/healthz`",
         "value": f"{cold * 1000:.0f} ms ({min(starts) * 1000:.0f}–{max(starts) * 1000:.0f})",
         "baseline": f"the same image running `python -c pass`: {floor * 1000:.0f} ms",
         "ratio": f"{cold / floor:.2f}×", "target": "≤ 2 s", "ok": cold <= 2.0},
    ]


def _until_healthy(port: int, started: float) -> float:
    """Seconds from ``started`` (perf_counter) to the first 200 on /healthz at ``port``."""
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.002)


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=100_000)
    parser.add_argument("--only",
                        default="create,search,memory,upload,upload-memory,import-memory,http,"
                        "startup,image")
    args = parser.parse_args()
    chosen = args.only.split(",")
    # the access log as `taskplaner serve` writes it: one JSON line per request
    logs.setup(open(os.devnull, "w"))  # noqa: SIM115 - for the life of the process
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "create" in chosen:
            rows.append(bench_create(tmp))
        if "search" in chosen:
            rows += bench_search(tmp, args.notes)
        if "memory" in chosen:
            rows.append(bench_memory(tmp, args.notes))
        if "upload" in chosen:
            rows.append(bench_upload(tmp))
        if "upload-memory" in chosen:
            rows += bench_upload_memory(tmp)
        if "import-memory" in chosen:
            rows.append(bench_import_memory(tmp))
        if "http" in chosen:
            rows.append(bench_http(tmp))
        if "startup" in chosen:
            rows.append(bench_startup(tmp))
        if "image" in chosen:
            rows += bench_image()
    print("| benchmark | result | baseline (same run) | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['value']} | {r['baseline']} | {r['ratio']} | {r['target']} |"
              f" {'yes' if r['ok'] else 'no'} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
