"""Image attachments: the upload pipeline, dedup and reference counting, serving, and a suite of
malicious or broken uploads that must be refused with a clear 4xx and leave nothing behind."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib

import pytest
from PIL import Image, ImageOps

from conftest import create_item, image_bytes, make_settings, start_server, stop_server


def upload(client, app, item_id, data, filename="photo.jpg", ctype="image/jpeg"):
    return client.post(
        app.url(f"/api/v1/items/{item_id}/attachments"), files={"file": (filename, data, ctype)}
    )


def blob_files(app):
    return sorted(app.services.blobs.all_digests())


def jpeg_with_exif(size=(40, 20), orientation=1, gps=True, comment=b"") -> bytes:
    img = Image.new("RGB", size, "blue")
    img.paste((255, 255, 0), (0, 0, size[0] // 2, size[1] // 2))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    if gps:
        exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)}
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes(), quality=95, comment=comment)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_upload_returns_metadata_and_serves_image_and_thumbnail(app, client):
    item = create_item(client, app)
    res = upload(client, app, item["id"], image_bytes("PNG", (800, 600)), "shot.png", "image/png")
    assert res.status_code == 201, res.text
    att = res.json()
    assert att["mime"] == "image/png" and (att["width"], att["height"]) == (800, 600)
    assert att["url"] == f"/api/v1/blobs/{att['hash']}" and len(att["hash"]) == 64
    img = client.get(app.url(att["url"]))
    assert img.status_code == 200 and img.headers["Content-Type"] == "image/png"
    assert img.headers["X-Content-Type-Options"] == "nosniff"
    assert img.headers["ETag"] == f'"{att["hash"]}"'
    assert "immutable" in img.headers["Cache-Control"]
    assert "sandbox" in img.headers["Content-Security-Policy"]
    again = client.get(app.url(att["url"]), headers={"If-None-Match": img.headers["ETag"]})
    assert again.status_code == 304
    thumb = client.get(app.url(att["thumbnail_url"]))
    assert thumb.headers["Content-Type"] == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= app.services.settings.thumbnail_px
    listed = client.get(app.url(f"/api/v1/items/{item['id']}")).json()["attachments"]
    assert [a["id"] for a in listed] == [att["id"]]
    assert app.anon().get(app.url(att["url"])).status_code == 401


def test_a_turned_jpeg_keeps_its_pixels_and_only_its_orientation(app, client):
    """Turning a JPEG upright would mean decoding and re-encoding it (lossy, ~6 bytes a pixel):
    the stored file keeps the compressed data and one EXIF field, Orientation, that browsers
    apply; the API reports the size as shown and the thumbnail is upright."""
    original = jpeg_with_exif(orientation=6)
    item = create_item(client, app)
    att = upload(client, app, item["id"], original).json()
    assert (att["width"], att["height"]) == (20, 40)  # as displayed
    stored = client.get(app.url(att["url"])).content
    img = Image.open(io.BytesIO(stored))
    assert dict(img.getexif()) == {0x0112: 6}
    assert b"PhoneMaker" not in stored and b"GPS" not in stored
    assert img.tobytes() == Image.open(io.BytesIO(original)).tobytes()  # not re-encoded
    shown = ImageOps.exif_transpose(img)
    thumb = Image.open(io.BytesIO(client.get(app.url(att["thumbnail_url"])).content)).convert("RGB")
    assert shown.size == (20, 40) and thumb.size == (20, 40)
    # the yellow quarter moves with the turn: top right once shown upright
    assert thumb.getpixel((17, 2))[2] < 100 and shown.convert("RGB").getpixel((17, 2))[2] < 100


def test_upright_jpeg_is_stripped_losslessly(app, client):
    original = jpeg_with_exif(orientation=1, comment=b"secret comment")
    item = create_item(client, app)
    att = upload(client, app, item["id"], original).json()
    stored = client.get(app.url(att["url"])).content
    assert b"PhoneMaker" not in stored and b"secret comment" not in stored
    assert not Image.open(io.BytesIO(stored)).getexif()
    same_pixels = Image.open(io.BytesIO(stored)).tobytes() == Image.open(io.BytesIO(original)).tobytes()
    assert same_pixels


def test_same_bytes_are_stored_once_and_freed_with_the_last_reference(app, client):
    a, b = create_item(client, app), create_item(client, app)
    data = image_bytes("PNG", (30, 30), "green")
    first = upload(client, app, a["id"], data, "a.png").json()
    second = upload(client, app, b["id"], data, "b.png").json()
    assert first["hash"] == second["hash"] and first["id"] != second["id"]
    assert len(blob_files(app)) == 2  # one image + one thumbnail
    assert client.delete(app.url(f"/api/v1/attachments/{first['id']}")).status_code == 204
    assert len(blob_files(app)) == 2
    assert client.delete(app.url(f"/api/v1/items/{b['id']}")).status_code == 204
    assert blob_files(app) == []
    assert client.delete(app.url(f"/api/v1/attachments/{first['id']}")).status_code == 404


def test_animated_gif_keeps_its_frames(app, client):
    frames = [Image.new("RGB", (10, 10), c) for c in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    item = create_item(client, app)
    att = upload(client, app, item["id"], out.getvalue(), "a.gif", "image/gif").json()
    stored = client.get(app.url(att["url"])).content
    assert Image.open(io.BytesIO(stored)).n_frames == 3


def _truncated_jpeg() -> bytes:
    data = image_bytes("JPEG", (400, 300), "purple", quality=95)
    return data[: len(data) // 2]


def _polyglot() -> bytes:
    return image_bytes("JPEG", (50, 50), "white", comment=b"<html><script>alert(1)</script>")


BAD_UPLOADS = {
    "svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "x.svg",
        "image/svg+xml",
        415,
        "unsupported_type",
    ),
    "html_named_jpg": (b"<html><body>hi</body></html>", "x.jpg", "image/jpeg", 415, "unsupported_type"),
    "zip": (b"PK\x03\x04" + b"\x00" * 100, "x.zip", "application/zip", 415, "unsupported_type"),
    "zero_bytes": (b"", "x.png", "image/png", 422, "empty"),
    "truncated_jpeg": (_truncated_jpeg(), "x.jpg", "image/jpeg", 422, "corrupt"),
    "bomb_png": (png_header_only(100_000, 100_000), "bomb.png", "image/png", 413, "too_many_pixels"),
    "just_over_pixel_limit": (png_header_only(10_000, 5_001), "b.png", "image/png", 413, "too_many_pixels"),
    "tiff": (image_bytes("TIFF"), "x.tif", "image/tiff", 415, "unsupported_type"),
}


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_malicious_uploads_are_refused_and_leave_nothing(app, client, name):
    data, filename, ctype, status, reason = BAD_UPLOADS[name]
    item = create_item(client, app)
    res = upload(client, app, item["id"], data, filename, ctype)
    assert res.status_code == status, res.text
    assert res.json()["error"]["code"] == reason and res.json()["error"]["field"] == "file"
    assert blob_files(app) == []
    assert list(app.services.blobs.tmp_dir.iterdir()) == []
    metrics = client.get(app.url("/metrics")).text
    assert f'taskplaner_upload_rejections_total{{reason="{reason}"}} 1.0' in metrics


def test_html_jpeg_polyglot_is_stored_without_the_html(app, client):
    item = create_item(client, app)
    att = upload(client, app, item["id"], _polyglot()).json()
    stored = client.get(app.url(att["url"]))
    assert b"<script>" not in stored.content
    assert stored.headers["Content-Type"] == "image/jpeg"


def test_wrong_extension_uses_the_real_format(app, client):
    item = create_item(client, app)
    att = upload(client, app, item["id"], image_bytes("PNG"), "photo.jpg", "image/jpeg").json()
    assert att["mime"] == "image/png"


def test_over_size_limit_is_413_before_processing(tmp_path):
    running = start_server(make_settings(tmp_path, max_upload_bytes=20_000))
    try:
        client = running.login()
        item = create_item(client, running)
        big = os.urandom(200_000)
        res = upload(client, running, item["id"], big)
        assert res.status_code == 413 and res.json()["error"]["code"] == "too_large"
        res = upload(client, running, item["id"], os.urandom(30_000))  # passes header check
        assert res.status_code == 413
        assert list(running.services.blobs.tmp_dir.iterdir()) == []
    finally:
        stop_server(running)


def test_upload_errors_for_missing_item_field_and_wrong_content_type(app, client):
    assert upload(client, app, 424242, image_bytes()).status_code == 404
    item = create_item(client, app)
    res = client.post(
        app.url(f"/api/v1/items/{item['id']}/attachments"),
        files={"other": ("x.png", image_bytes(), "image/png")},
    )
    assert res.status_code == 400 and res.json()["error"]["field"] == "file"
    res = client.post(
        app.url(f"/api/v1/items/{item['id']}/attachments"),
        data=image_bytes(),
        headers={"Content-Type": "image/png"},
    )
    assert res.status_code == 415
    res = client.post(
        app.url(f"/api/v1/items/{item['id']}/attachments"),
        data=b"--x\r\ngarbage",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert res.status_code in (400, 422) and "error" in res.json()


def test_gc_removes_only_old_unreferenced_files(app, client):
    item = create_item(client, app)
    kept = upload(client, app, item["id"], image_bytes()).json()
    orphan = app.services.blobs.put(b"orphan bytes")
    fresh_orphan = app.services.blobs.put(b"fresh orphan")
    old = time.time() - 3600
    os.utime(app.services.blobs.path_for(orphan), (old, old))
    stale_tmp = app.services.blobs.tmp_dir / "up-stale"
    stale_tmp.write_bytes(b"x")
    os.utime(stale_tmp, (old, old))
    result = app.services.attachments.gc()
    assert result == {"blobs_removed": 1, "temp_files_removed": 1}
    remaining = set(blob_files(app))
    assert kept["hash"] in remaining and fresh_orphan in remaining and orphan not in remaining


def test_control_characters_in_multipart_headers_are_a_400(app, client):
    item = create_item(client, app)
    body = (
        b'--b\r\nContent-Disposition: form-data; name="fi\x00le"; filename="x.png"\r\n\r\ndata\r\n--b--\r\n'
    )
    for path in (f"/api/v1/items/{item['id']}/attachments", "/api/v1/import"):
        res = client.post(
            app.url(path), data=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert res.status_code == 400, (path, res.text)
        assert res.json()["error"]["code"] == "bad_multipart"
