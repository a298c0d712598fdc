"""What reaches the blob store from an upload, and what an upload may cost.

- No stored image, in any accepted format, keeps metadata: EXIF (GPS), XMP, comments, text
  chunks, extra pictures or bytes after the image's end. Pixels are kept exactly.
- An image whose decoding would take more memory than ``max_decode_bytes`` is refused from
  its header; one within it takes no more than its estimate (measured in a fresh process).
- Uploads beyond the parallel limit are refused at once, and probes keep answering.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zlib

import pytest
from PIL import Image, PngImagePlugin

from conftest import create_item, make_settings, start_server, stop_server
from taskplaner import images

SECRETS = (b"GPS", b"PhoneMaker", b"secret comment", b"xmpmeta", b"<html>", b"exif:GPSLatitude")
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
       b'exif:GPSLatitude="52,31.2N"/></rdf:RDF></x:xmpmeta>')
TRAILER = b"<html><script>alert(1)</script></html>"


def exif_bytes() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}
    return exif.tobytes()


def picture(mode: str = "RGB", size: tuple[int, int] = (64, 40)) -> Image.Image:
    img = Image.new(mode, size, "navy" if mode != "P" else 1)
    img.paste("orange" if mode != "P" else 2, (0, 0, size[0] // 2, size[1] // 2))
    return img


def jpeg() -> bytes:
    out = io.BytesIO()
    picture().save(out, "JPEG", exif=exif_bytes(), comment=b"secret comment", quality=95)
    data = out.getvalue()
    app1_xmp = b"http://ns.adobe.com/xap/1.0/\x00" + XMP
    xmp_segment = b"\xff\xe1" + struct.pack(">H", len(app1_xmp) + 2) + app1_xmp
    return data[:2] + xmp_segment + data[2:] + TRAILER


def mpo() -> bytes:
    out = io.BytesIO()
    picture().save(out, "MPO", save_all=True, append_images=[picture().rotate(90)],
                   exif=exif_bytes())
    return out.getvalue()


def png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret comment")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    out = io.BytesIO()
    picture("RGBA").save(out, "PNG", pnginfo=info, exif=exif_bytes())
    return out.getvalue() + TRAILER


def gif() -> bytes:
    out = io.BytesIO()
    frames = [picture("P"), picture("P").rotate(180)]
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], comment=b"secret comment",
                   loop=0)
    data = out.getvalue()
    xmp_ext = b"\x21\xff\x0bXMP DataXMP" + bytes([len(XMP[:255])]) + XMP[:255] + b"\x00"
    return data[:-1] + xmp_ext + b"\x3b" + TRAILER


def webp() -> bytes:
    out = io.BytesIO()
    picture().save(out, "WEBP", lossless=True, exif=exif_bytes(), xmp=XMP)
    return out.getvalue() + TRAILER


FORMATS = {"jpeg": (jpeg, "image/jpeg"), "mpo": (mpo, "image/jpeg"), "png": (png, "image/png"),
           "gif": (gif, "image/gif"), "webp": (webp, "image/webp")}


def upload(client, app, item_id, data, name="x"):
    return client.post(app.url(f"/api/v1/items/{item_id}/attachments"),
                       files={"file": (name, data, "application/octet-stream")})


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_no_metadata_survives_in_any_format(app, client, fmt):
    make, mime = FORMATS[fmt]
    original = make()
    assert all(s in original for s in (b"PhoneMaker",) if fmt != "gif")  # the fixture has it
    item = create_item(client, app)
    res = upload(client, app, item["id"], original)
    assert res.status_code == 201, res.text
    assert res.json()["mime"] == mime
    stored = client.get(app.url(res.json()["url"])).content
    for secret in SECRETS:
        assert secret not in stored, (fmt, secret)
    img = Image.open(io.BytesIO(stored))
    assert not img.getexif(), fmt
    assert img.format == ("JPEG" if fmt == "mpo" else fmt.upper())
    before = Image.open(io.BytesIO(original))
    assert getattr(img, "n_frames", 1) == (1 if fmt == "mpo" else getattr(before, "n_frames", 1))
    for index in range(getattr(img, "n_frames", 1)):  # every frame's pixels are kept exactly
        img.seek(index)
        before.seek(index)
        assert img.convert("RGBA").tobytes() == before.convert("RGBA").tobytes(), (fmt, index)


def png_header(width: int, height: int, colour_type: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) \
        + chunk(b"IEND", b"")


def gif_header(width: int, height: int) -> bytes:
    """A GIF with a two-colour palette (so Pillow reads it as mode P) and no pixels."""
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00" + b"\x00" * 6 \
        + b"\x2c\x00\x00\x00\x00" + struct.pack("<HH", width, height) + b"\x00\x02\x02\x4c\x01\x00\x3b"


def webp_header(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" \
        + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8l = b"VP8L" + struct.pack("<I", 6) + b"\x2f" + b"\x00" * 5
    body = b"WEBP" + vp8x + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def progressive_jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "gray").save(out, "JPEG", progressive=True, quality=50)
    return out.getvalue()


BUDGET = 16 * 1024 * 1024
OVER_BUDGET = {  # tiny files that describe images whose decoding would pass 16 MiB
    "png": png_header(2400, 2000),  # 4 bytes a pixel: 18 MiB
    "palette png": png_header(2400, 2000, colour_type=3),  # 1 + 4 (the thumbnail's RGB copy)
    "gif": gif_header(2000, 2000),  # 1 + 4 bytes a pixel: 19 MiB
    "webp": webp_header(1200, 1000),  # 16 bytes a pixel: 18 MiB
    "progressive jpeg": progressive_jpeg((3200, 2000)),  # coefficients: 3 bytes a pixel
}


def test_images_that_would_take_too_much_memory_are_refused_from_their_header(tmp_path):
    running = start_server(make_settings(tmp_path, max_decode_bytes=BUDGET))
    try:
        client = running.login()
        item = create_item(client, running)
        for name, data in OVER_BUDGET.items():
            res = upload(client, running, item["id"], data)
            assert res.status_code == 413, (name, res.text)
            assert res.json()["error"]["code"] == "too_many_pixels"
            assert "MiB" in res.json()["error"]["message"], name
        # a baseline JPEG is decoded at a reduced scale, so the same size is accepted
        out = io.BytesIO()
        Image.new("RGB", (3200, 2000), "gray").save(out, "JPEG", quality=50)
        assert upload(client, running, item["id"], out.getvalue()).status_code == 201
    finally:
        stop_server(running)


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve, so the child would report the
# test process's own peak and every image would seem free.
MEASURE = """
import io, json, sys, tempfile
from pathlib import Path
from taskplaner import images
from PIL import Image
path, budget = Path(sys.argv[1]), int(sys.argv[2])
estimate = images.decode_bytes(Image.open(path), 480)
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024
before = hwm()
with tempfile.TemporaryFile() as out:
    images.process(path, out, images.ImageLimits(50_000_000, budget, 480))
peak = hwm()
print(json.dumps({"estimate": estimate, "used": peak - before}))
"""


# name: (mode, format, save options); a baseline JPEG is decoded at a reduced scale, so its
# largest accepted size is far beyond the budget: it is made four times the budget's pixels.
WORST = {"png": ("RGB", "PNG", {}), "png rgba": ("RGBA", "PNG", {}), "gif": ("P", "GIF", {}),
         "webp": ("RGB", "WEBP", {}), "progressive jpeg": ("RGB", "JPEG", {"progressive": True}),
         "jpeg": ("RGB", "JPEG", {})}


def largest_accepted(path, mode: str, fmt: str, options: dict, budget: int) -> None:
    """Save the largest square image (within 5 %) whose decode estimate fits the budget."""
    n = int(budget**0.5) if fmt == "JPEG" and not options else int((budget / 4) ** 0.5)
    while True:
        grey = Image.linear_gradient("L").resize((n, n))  # cheap to make: a gradient, in colour
        Image.merge("RGB", (grey, grey.rotate(90), grey.rotate(180))).convert(mode).save(
            path, fmt, **options)
        with Image.open(path) as img:
            if images.decode_bytes(img, 480) <= budget:
                return
        n = int(n * 0.95)


def test_decoding_takes_no_more_memory_than_estimated(tmp_path):
    budget = 32 * 1024 * 1024
    for name, (mode, fmt, options) in WORST.items():
        path = tmp_path / name.replace(" ", "_")
        largest_accepted(path, mode, fmt, options, budget)
        run = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(budget)],
                             capture_output=True, text=True, check=True)
        figures = json.loads(run.stdout)
        assert figures["estimate"] > budget * 0.8 or name == "jpeg", (name, figures)
        assert figures["used"] >= figures["estimate"] // 4, (name, figures)  # it was measured
        # the estimate bounds what decoding really took (8 MiB: allocator and library slack)
        assert figures["used"] <= figures["estimate"] + 8 * 1024 * 1024, (name, figures)


def test_uploads_beyond_the_parallel_limit_get_a_prompt_429_and_probes_answer(tmp_path):
    running = start_server(make_settings(tmp_path, max_parallel_uploads=2))
    slots = running.services.attachments._slots
    try:
        client = running.login()
        item = create_item(client, running)
        for _ in range(2):  # both slots busy, as with two large uploads being processed
            slots.acquire()
        started = time.monotonic()
        res = upload(client, running, item["id"], png())
        assert res.status_code == 429 and res.headers["Retry-After"].isdigit()
        assert res.json()["error"]["code"] == "busy"
        assert time.monotonic() - started < 2  # refused at once, no worker held
        assert running.anon().get(running.url("/healthz"), timeout=2).status_code == 200
        slots.release()
        assert upload(client, running, item["id"], png()).status_code == 201
    finally:
        slots.release()
        stop_server(running)
