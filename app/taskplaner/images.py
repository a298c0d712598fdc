"""Turn an uploaded file into a safe stored image and a WebP thumbnail, or refuse it.

Safety rules (each failure is an ``ImageRejected`` with a reason used in metrics):
- only JPEG (MPO: its first picture), PNG, GIF and WebP are opened (Pillow's ``formats=``
  allowlist): no SVG, no HTML;
- the pixel count is checked from the header before any decoding (decompression bombs), and so
  is the memory decoding would take (``decode_bytes``), against ``max_decode_bytes``;
- every frame is decoded, so truncated or corrupt files are refused;
- no metadata reaches the store: EXIF (GPS, camera), XMP, IPTC, comments, MPF pictures and
  anything after the image's end are dropped from every format.

Memory is bounded by design, because a 100 KB file can describe a 50-megapixel canvas:
- JPEG keeps its compressed data bit for bit: the stream is copied segment by segment with the
  metadata left out, and only a reduced-scale decode (libjpeg's DCT scaling) makes the
  thumbnail. A JPEG that must be turned keeps one EXIF field, Orientation, which every browser
  and viewer applies; re-encoding it upright would take ~6 bytes per pixel (300 MB at 50 Mpx)
  and lose quality. Progressive JPEGs need libjpeg's whole-image coefficient buffer (2 bytes per
  sample), which ``decode_bytes`` counts;
- GIF keeps its frames bit for bit, copied block by block, with comment, application (XMP)
  and plain-text extensions and trailing bytes removed;
- PNG and WebP are decoded and re-encoded without metadata; ``decode_bytes`` counts the decoded
  frame and the encoder's working copy.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from PIL import Image

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
        "WEBP": "image/webp"}
MAX_FRAMES = 500
JPEG_QUALITY = 90
THUMB_QUALITY = 80
EXIF_ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # orientations that swap width and height
# libwebp's canvas and previous frame, Pillow's copy and its mode conversion (measured)
WEBP_BYTES_PER_PIXEL = 16
CHUNK = 1024 * 1024
STREAM_BYTES = 8 * CHUNK  # read buffers of the strippers and decoders (measured)
SLACK = 1.05  # decoders' and the allocator's share beyond the pixels (measured, PNG RGBA)


@functools.cache
def _pil() -> ModuleType:
    """Pillow, imported with the first image: starting the server and every request without an
    image do without it."""
    import PIL.Image
    import PIL.ImageOps

    # Pillow only warns between 1x and 2x its limit; a warning must never let a bomb through.
    warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
    return PIL


class ImageRejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ProcessedImage:
    mime: str
    width: int  # as displayed, after the orientation is applied
    height: int
    thumbnail: bytes


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    max_decode_bytes: int
    thumbnail_px: int


def process(src: Path, out: BinaryIO, limits: ImageLimits) -> ProcessedImage:
    """Write the image to store into ``out``; return what to record about it."""
    if src.stat().st_size == 0:
        raise ImageRejected("empty", "the file is empty")
    with src.open("rb") as fh:
        size = webp_canvas(fh.read(32))
    if size is not None:  # Pillow allocates a WebP's canvas as it opens the file
        _check_budget(size[0] * size[1], WEBP_BYTES_PER_PIXEL, limits)
    image = _pil().Image
    try:
        with image.open(src, formats=ALLOWED_FORMATS) as img:
            return _process(img, src, out, limits)
    except ImageRejected:
        raise
    except (image.DecompressionBombError, image.DecompressionBombWarning):
        raise ImageRejected("too_many_pixels", "the image has too many pixels") from None
    except image.UnidentifiedImageError:
        raise ImageRejected(
            "unsupported_type", "only JPEG, PNG, GIF and WebP images can be attached"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError) as exc:
        raise ImageRejected("corrupt", f"the image could not be read: {exc}") from None


def decode_bytes(img: Image.Image, thumb_px: int) -> int:
    """The memory processing this image takes, from its header alone (bench/run.py's
    upload-memory rows measure it)."""
    w, h = img.size
    if img.format in ("JPEG", "MPO"):
        # DCT scaling as Pillow's draft() picks it: 1/1, 1/2, 1/4 or 1/8, at least 2× the thumb
        fit = min(w, h) // (2 * thumb_px)
        scale = next(sc for sc in (8, 4, 2, 1) if fit >= sc or sc == 1)
        draft = (w // scale + 1) * (h // scale + 1) * 4 + STREAM_BYTES
        if not img.info.get("progressive"):
            return draft
        layers = getattr(img, "layer", None) or [(0, 1, 1, 0)] * 3
        h_max = max(layer[1] for layer in layers)
        v_max = max(layer[2] for layer in layers)
        samples = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
        return int(w * h * samples * 2) + draft  # libjpeg keeps every coefficient, 16 bits each
    frames = getattr(img, "n_frames", 1)
    factor = _reduce_factor(w, h, thumb_px)
    shrunk = (w // factor + 1) * (h // factor + 1) * 4 if factor > 1 else 0  # the thumbnail's start
    if img.format == "WEBP":
        return int(w * h * WEBP_BYTES_PER_PIXEL * SLACK) + shrunk + STREAM_BYTES
    # Pillow keeps 1 byte per pixel for P and L, 4 for the rest (RGB too); the thumbnail
    # needs a 4-byte copy of what reduce() cannot shrink; GIF frames after the first are
    # composed on a 4-byte canvas beside the previous one.
    decoded = 1 if img.mode in ("P", "L", "1") else 4
    copy = 1 if img.mode in ("RGBA", "LA") else 0 if img.mode in REDUCIBLE else 4
    animation = 8 if frames > 1 else 0
    return int(w * h * (decoded + copy + animation) * SLACK) + shrunk + STREAM_BYTES


def _check_budget(units: int, bytes_per_unit: int, limits: ImageLimits) -> None:
    needed = units * bytes_per_unit
    if needed > limits.max_decode_bytes:
        raise ImageRejected(
            "too_many_pixels",
            f"decoding this image would take {needed // 2**20} MiB, more than the "
            f"{limits.max_decode_bytes // 2**20} MiB allowed; send it with fewer pixels,"
            " or as a baseline JPEG",
        )


def webp_canvas(head: bytes) -> tuple[int, int] | None:
    """A WebP's canvas size from its first 30 bytes, or None if it is not a WebP."""
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    kind = head[12:16]
    if kind == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if kind == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":
        return (int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF)
    return None


def _process(img: Image.Image, src: Path, out: BinaryIO, limits: ImageLimits) -> ProcessedImage:
    fmt = img.format or ""
    frames = 1 if fmt in ("JPEG", "MPO") else getattr(img, "n_frames", 1)
    pixels = img.width * img.height
    if pixels > limits.max_pixels or frames > MAX_FRAMES:
        raise ImageRejected("too_many_pixels", f"the image is larger than {limits.max_pixels} pixels")
    if pixels * frames > 4 * limits.max_pixels:
        raise ImageRejected("too_many_pixels", "the animation has too many pixels in all")
    _check_budget(decode_bytes(img, limits.thumbnail_px), 1, limits)
    orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    orientation = orientation if orientation in range(1, 9) else 1

    if fmt in ("JPEG", "MPO"):
        width, height = img.size
        img.draft("RGB", (limits.thumbnail_px * 2, limits.thumbnail_px * 2))
        img.load()  # reads and checks all the compressed data, at a reduced scale
        with src.open("rb") as fh:
            strip_jpeg_metadata(fh, out, orientation)
        if orientation in TURNED:
            width, height = height, width
        thumb = _pil().ImageOps.exif_transpose(img) if orientation != 1 else img
        return ProcessedImage(MIME[fmt], width, height, _thumbnail(thumb, limits.thumbnail_px))

    img.load()
    if frames > 1:  # decode every frame (truncation shows up here), then draw the first
        for index in range(1, frames):
            img.seek(index)
            img.load()
        img.seek(0)
        img.load()
    if orientation != 1 and frames == 1 and fmt in ("PNG", "WEBP"):
        # rare (an eXIf chunk), and browsers disagree on applying it: store it upright
        upright = _pil().ImageOps.exif_transpose(img)
        icc = img.info.get("icc_profile")
        upright.save(out, fmt, icc_profile=icc, **REENCODE[fmt])
        return ProcessedImage(MIME[fmt], upright.width, upright.height,
                              _thumbnail(upright, limits.thumbnail_px))
    with src.open("rb") as fh:
        STRIP[fmt](fh, out)
    return ProcessedImage(MIME[fmt], img.width, img.height, _thumbnail(img, limits.thumbnail_px))


def _thumbnail(img: Image.Image, px: int) -> bytes:
    """Shrink first, then convert: no full-size copy of an RGB(A) image is made. Pillow copies
    an image with alpha whole to premultiply it before any resampling, so those are shrunk one
    band at a time (1 byte a pixel while it runs)."""
    factor = _reduce_factor(img.width, img.height, px)
    scale = min(1.0, px / max(img.width // factor, img.height // factor))
    size = (max(1, round(img.width // factor * scale)), max(1, round(img.height // factor * scale)))
    image = _pil().Image
    if img.mode in ("RGBA", "LA"):
        bands = []
        for index in range(len(img.getbands())):
            band = img.getchannel(index)
            band = band.reduce(factor) if factor > 1 else band
            bands.append(band.resize(size, image.Resampling.LANCZOS) if band.size != size else band)
        thumb = image.merge(img.mode, bands)
    else:
        small = img.reduce(factor) if factor > 1 and img.mode in REDUCIBLE else img
        if small.mode not in ("RGB", "RGBA"):
            alpha = "A" in small.getbands() or "transparency" in small.info
            small = small.convert("RGBA" if alpha else "RGB")
        thumb = small.resize(size, image.Resampling.LANCZOS) if small.size != size else small
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA" if "A" in thumb.getbands() else "RGB")
    out = io.BytesIO()
    thumb.save(out, "WEBP", quality=THUMB_QUALITY)
    return out.getvalue()


REDUCIBLE = {"L", "LA", "RGB", "RGBA", "I", "F"}


def _reduce_factor(width: int, height: int, px: int) -> int:
    """How much a thumbnail's source is shrunk (box filter) before its final resize."""
    return max(1, min(width, height, max(width, height) // (2 * px)))


# JPEG segments kept when stripping: JFIF/JFXX (APP0), ICC profiles (APP2 "ICC_PROFILE"),
# Adobe colour transform (APP14) and every non-APP segment needed to decode.
_KEEP_APP = {0xE0, 0xEE}


class _Reader:
    """Buffered reads from a file, for a parser that needs bytes one marker at a time."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.buf = b""

    def fill(self, n: int) -> bool:
        while len(self.buf) < n:
            more = self.fh.read(CHUNK)
            if not more:
                return False
            self.buf += more
        return True

    def take(self, n: int) -> bytes:
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def _orientation_segment(orientation: int) -> bytes:
    exif = _pil().Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    payload = b"Exif\x00\x00" + exif.tobytes()
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def strip_jpeg_metadata(fh: BinaryIO, out: BinaryIO, orientation: int = 1) -> None:
    """Copy a JPEG without EXIF/XMP/IPTC/comments and without anything after its end, in
    chunks (no whole-file copy in memory). An orientation other than 1 is kept, alone."""
    r = _Reader(fh)
    if not r.fill(2) or r.take(2) != b"\xff\xd8":
        raise ImageRejected("corrupt", "not a JPEG stream")
    out.write(b"\xff\xd8")
    if orientation != 1:
        out.write(_orientation_segment(orientation))
    while r.fill(2):
        if r.buf[0] != 0xFF:
            raise ImageRejected("corrupt", "broken JPEG segment structure")
        marker = r.buf[1]
        if marker == 0xFF:  # fill byte
            r.take(1)
            continue
        if marker == 0xD9:  # EOI: the image ends; MPF pictures, depth maps, HTML… are dropped
            out.write(b"\xff\xd9")
            return
        if not r.fill(4):
            break
        length = int.from_bytes(r.buf[2:4], "big")
        if length < 2 or not r.fill(2 + length):
            break
        segment = r.take(2 + length)
        is_metadata = 0xE0 <= marker <= 0xEF or marker == 0xFE
        is_icc = marker == 0xE2 and segment[4:16] == b"ICC_PROFILE\x00"
        if not is_metadata or marker in _KEEP_APP or is_icc:
            out.write(segment)
        if marker == 0xDA:  # start of scan: copy entropy-coded data up to the next marker
            _copy_scan(r, out)
    raise ImageRejected("corrupt", "the JPEG ends before its end marker")


def _copy_scan(r: _Reader, out: BinaryIO) -> None:
    """Copy entropy-coded bytes until a marker that is not stuffing (FF00), a restart marker
    (FFD0-FFD7) or fill (FFFF); leave that marker in the reader."""
    pos = 0
    while True:
        found = r.buf.find(b"\xff", pos)
        if found < 0:
            out.write(r.take(len(r.buf)))
            pos = 0
            if not r.fill(1):
                return
            continue
        if found + 1 >= len(r.buf) and not r.fill(found + 2):
            out.write(r.take(len(r.buf)))
            return
        nxt = r.buf[found + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
            pos = found + 2
        elif nxt == 0xFF:
            pos = found + 1
        else:
            out.write(r.take(found))
            return


_GIF_KEEP_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")  # the loop count of an animation


def strip_gif_metadata(fh: BinaryIO, out: BinaryIO) -> None:
    """Copy a GIF block by block with only what draws it: header, colour tables, graphic
    control, images and the loop count. Comments, XMP and other application data, plain text
    and trailing bytes are left out."""
    head = fh.read(13)
    if len(head) < 13 or head[:6] not in (b"GIF87a", b"GIF89a"):
        raise ImageRejected("corrupt", "not a GIF stream")
    out.write(head)
    if head[10] & 0x80:  # global colour table
        _copy_or_skip(fh, out, 3 * (2 << (head[10] & 7)))
    while kind := fh.read(1):
        if kind == b"\x3b":  # trailer
            out.write(kind)
            return
        if kind == b"\x2c":  # image descriptor, local colour table, LZW code size, data
            descriptor = _read_exact(fh, 9)
            out.write(kind + descriptor)
            if descriptor[8] & 0x80:
                _copy_or_skip(fh, out, 3 * (2 << (descriptor[8] & 7)))
            _copy_or_skip(fh, out, 1)
            _copy_sub_blocks(fh, out)
        elif kind == b"\x21":  # extension: label, then sub-blocks (an application's id first)
            label = _read_exact(fh, 1)
            size = _read_exact(fh, 1)
            first = size + _read_exact(fh, size[0])
            keep = label == b"\xf9" or (label == b"\xff" and first[1:12] in _GIF_KEEP_APPS)
            if keep:
                out.write(kind + label + first)
            if size != b"\x00":
                _copy_sub_blocks(fh, out if keep else None)
        else:
            break
    raise ImageRejected("corrupt", "the GIF ends before its trailer")


def _copy_sub_blocks(fh: BinaryIO, out: BinaryIO | None) -> None:
    """Copy (or skip) sub-blocks up to and including the empty one that ends them."""
    while True:
        size = _read_exact(fh, 1)
        if out is not None:
            out.write(size)
        if size == b"\x00":
            return
        _copy_or_skip(fh, out, size[0])


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) < n:
        raise ImageRejected("corrupt", "the image ends inside a block")
    return data


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that draw the image (APNG's included); text (XMP lives in iTXt), eXIf, tIME, private
# chunks and anything after IEND are left out.
_PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP",
             b"sBIT", b"pHYs", b"bKGD", b"cICP", b"acTL", b"fcTL", b"fdAT"}


def strip_png_metadata(fh: BinaryIO, out: BinaryIO) -> None:
    """Copy a PNG chunk by chunk, keeping only ``_PNG_KEEP``; stop after IEND."""
    if fh.read(8) != PNG_SIGNATURE:
        raise ImageRejected("corrupt", "not a PNG stream")
    out.write(PNG_SIGNATURE)
    while len(head := fh.read(8)) == 8:
        length, kind = int.from_bytes(head[:4], "big"), head[4:]
        keep = kind in _PNG_KEEP
        if keep:
            out.write(head)
        _copy_or_skip(fh, out if keep else None, length + 4)  # data and CRC
        if kind == b"IEND":
            return
    raise ImageRejected("corrupt", "the PNG ends before IEND")


# WebP (RIFF) chunks that draw the image; EXIF, XMP and unknown chunks are left out.
_WEBP_KEEP = {b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"}
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04


def strip_webp_metadata(fh: BinaryIO, out: BinaryIO) -> None:
    """Copy a WebP keeping only ``_WEBP_KEEP`` chunks, with the VP8X flags and the RIFF size
    rewritten to match; bytes after the RIFF container are left out."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise ImageRejected("corrupt", "not a WebP stream")
    end = 8 + int.from_bytes(head[4:8], "little")
    kept: list[tuple[int, bytes, int]] = []  # (offset of data, fourcc, padded size)
    pos = 12
    while pos + 8 <= end:
        fh.seek(pos)
        chunk = fh.read(8)
        if len(chunk) < 8:
            break
        size = int.from_bytes(chunk[4:], "little")
        padded = size + (size & 1)
        if chunk[:4] in _WEBP_KEEP:
            kept.append((pos + 8, chunk[:4], padded))
        pos += 8 + padded
    if pos != end or fh.seek(0, 2) < end or not kept:
        raise ImageRejected("corrupt", "broken WebP chunk structure")
    out.write(b"RIFF" + (4 + sum(8 + p for _, _, p in kept)).to_bytes(4, "little") + b"WEBP")
    for offset, fourcc, padded in kept:
        fh.seek(offset)
        out.write(fourcc + (padded if fourcc != b"VP8X" else 10).to_bytes(4, "little"))
        if fourcc == b"VP8X":
            flags = fh.read(padded)
            out.write(bytes([flags[0] & ~(_VP8X_EXIF | _VP8X_XMP) & 0xFF]) + flags[1:])
            continue
        _copy_or_skip(fh, out, padded)


def _copy_or_skip(fh: BinaryIO, out: BinaryIO | None, n: int) -> None:
    while n > 0:
        data = fh.read(min(n, CHUNK))
        if not data:
            raise ImageRejected("corrupt", "the image ends inside a chunk")
        if out is not None:
            out.write(data)
        n -= len(data)


STRIP = {"GIF": strip_gif_metadata, "PNG": strip_png_metadata, "WEBP": strip_webp_metadata}
REENCODE: dict[str, dict[str, object]] = {"PNG": {"compress_level": 6},
                                          "WEBP": {"quality": JPEG_QUALITY}}
