"""Turn an uploaded file into a safe stored image and a WebP thumbnail, or refuse it.

Safety rules (each failure is an ``ImageRejected`` with a reason used in metrics):
- only JPEG, PNG, GIF and WebP are opened (Pillow's ``formats=`` allowlist): no SVG, no HTML;
- the pixel count is checked from the header before any decoding (decompression bombs);
- every frame is fully decoded, so truncated or corrupt files are refused;
- EXIF (with GPS), XMP, IPTC and comments never reach the store. A JPEG that needs no
  rotation keeps its compressed data bit for bit (only metadata segments are dropped);
  anything rotated by its EXIF orientation, and PNG/WebP, is re-encoded without metadata.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
MAX_FRAMES = 500
JPEG_QUALITY = 90
THUMB_QUALITY = 80
EXIF_ORIENTATION = 0x0112

# Pillow only warns between 1x and 2x its limit; a warning must never let a bomb through.
warnings.simplefilter("error", Image.DecompressionBombWarning)


class ImageRejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    mime: str
    width: int
    height: int
    thumbnail: bytes


def process(path: Path, max_pixels: int, thumb_px: int) -> ProcessedImage:
    raw = path.read_bytes()
    if not raw:
        raise ImageRejected("empty", "the file is empty")
    try:
        return _process(raw, max_pixels, thumb_px)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("too_many_pixels", "the image has too many pixels") from None
    except Image.UnidentifiedImageError:
        raise ImageRejected(
            "unsupported_type", "only JPEG, PNG, GIF and WebP images can be attached"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        raise ImageRejected("corrupt", f"the image could not be read: {exc}") from None


def _process(raw: bytes, max_pixels: int, thumb_px: int) -> ProcessedImage:
    img = Image.open(io.BytesIO(raw), formats=ALLOWED_FORMATS)
    fmt = img.format or ""
    frames = getattr(img, "n_frames", 1)
    if img.width * img.height > max_pixels or frames > MAX_FRAMES:
        raise ImageRejected("too_many_pixels", f"the image is larger than {max_pixels} pixels")
    if img.width * img.height * frames > 4 * max_pixels:
        raise ImageRejected("too_many_pixels", "the animation has too many pixels in all")
    orientation = img.getexif().get(EXIF_ORIENTATION, 1)

    if fmt == "JPEG" and orientation in (1, None):
        width, height = img.size
        # Decode at a reduced scale: this reads and checks all the compressed data, fast.
        img.draft("RGB", (thumb_px * 2, thumb_px * 2))
        img.load()
        return ProcessedImage(
            strip_jpeg_metadata(raw), MIME[fmt], width, height, _thumbnail(img, thumb_px)
        )

    for index in range(frames):  # decode every frame: truncation shows up here
        img.seek(index)
        img.load()
    img.seek(0)
    if fmt == "GIF":  # GIF has no EXIF; keep the animation as uploaded
        return ProcessedImage(raw, MIME[fmt], img.width, img.height, _thumbnail(img, thumb_px))

    upright = ImageOps.exif_transpose(img) if frames == 1 else img
    out = io.BytesIO()
    icc = img.info.get("icc_profile")
    if fmt == "JPEG":
        upright.save(out, "JPEG", quality=JPEG_QUALITY, icc_profile=icc)
    elif fmt == "PNG":
        upright.save(out, "PNG", compress_level=6, icc_profile=icc)
    else:
        upright.save(out, "WEBP", quality=JPEG_QUALITY, save_all=frames > 1, icc_profile=icc)
    return ProcessedImage(
        out.getvalue(), MIME[fmt], upright.width, upright.height, _thumbnail(upright, thumb_px)
    )


def _thumbnail(img: Image.Image, px: int) -> bytes:
    thumb = img.copy()
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA" if "A" in thumb.getbands() or "transparency" in img.info
                              else "RGB")
    thumb.thumbnail((px, px), Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    thumb.save(out, "WEBP", quality=THUMB_QUALITY)
    return out.getvalue()


# JPEG segments kept when stripping: JFIF/JFXX (APP0), ICC profiles (APP2 "ICC_PROFILE"),
# Adobe colour transform (APP14) and every non-APP segment needed to decode.
_KEEP_APP = {0xE0, 0xEE}


def strip_jpeg_metadata(raw: bytes) -> bytes:
    """Drop EXIF/XMP/IPTC/comment segments and anything after EOI, without re-encoding."""
    if raw[:2] != b"\xff\xd8":
        raise ImageRejected("corrupt", "not a JPEG stream")
    out = bytearray(b"\xff\xd8")
    pos, n = 2, len(raw)
    while pos < n:
        if raw[pos] != 0xFF:
            raise ImageRejected("corrupt", "broken JPEG segment structure")
        marker = raw[pos + 1] if pos + 1 < n else -1
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI: the image ends; trailing data (MPF, depth maps…) is dropped
            out += b"\xff\xd9"
            return bytes(out)
        if marker == -1 or pos + 4 > n:
            break
        length = int.from_bytes(raw[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > n:
            break
        segment = raw[pos:end]
        is_metadata = 0xE0 <= marker <= 0xEF or marker == 0xFE
        is_icc = marker == 0xE2 and segment[4:16] == b"ICC_PROFILE\x00"
        if not is_metadata or marker in _KEEP_APP or is_icc:
            out += segment
        pos = end
        if marker == 0xDA:  # start of scan: copy entropy-coded data up to the next marker
            scan_end = _scan_end(raw, pos)
            out += raw[pos:scan_end]
            pos = scan_end
    raise ImageRejected("corrupt", "the JPEG ends before its end marker")


def _scan_end(raw: bytes, pos: int) -> int:
    while True:
        pos = raw.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(raw):
            return len(raw)
        nxt = raw[pos + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
            pos += 1 if nxt == 0xFF else 2
            continue
        return pos
