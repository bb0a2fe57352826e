"""What an image file really is: PNG or JPEG by its magic bytes, its width and height from the header (standard library only).

Only headers are read (a PNG's IHDR chunk, a JPEG's segments up to its SOF frame header), never the
pixels, so a hostile file cannot make the runner decompress anything.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG frame headers that carry the size: SOF0-3, 5-7, 9-11, 13-15 (C4 is DHT, C8 is reserved, CC is DAC)
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0-7, SOI: markers without a length
_MAX_SEGMENTS = 4096
_HEAD = 8000  # bytes looked at to say what a file that is not an image is
_OTHER_MAGICS = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x1f\x8b", "gzip data"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
)


@dataclass(frozen=True)
class Image:
    format: str  # "PNG" or "JPEG"
    width: int
    height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def describe(head: bytes) -> str:
    """What a file starting with ``head`` is, in a few words, without quoting it (it may hold a secret)."""
    if not head:
        return "empty"
    if head.startswith(PNG_MAGIC):
        return "a PNG image"
    if head.startswith(JPEG_MAGIC):
        return "a JPEG image"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "a WebP image"
    for magic, what in _OTHER_MAGICS:
        if head.startswith(magic) and (magic != b"BM" or b"\0" in head[:64]):
            return what
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a character cut at the end of the head
                return "text"
    return f"binary data (starting with 0x{head[:4].hex()})"


def _png(head: bytes) -> tuple[Image | None, str]:
    if len(head) < 24 or head[12:16] != b"IHDR" or int.from_bytes(head[8:12], "big") != 13:
        return None, "a damaged PNG (no IHDR header)"
    width, height = struct.unpack(">II", head[16:24])
    if not (0 < width < 2**31 and 0 < height < 2**31):
        return None, f"a damaged PNG (its header says {width}x{height})"
    return Image("PNG", width, height), "a PNG image"


def _jpeg(fh: BinaryIO, size: int) -> tuple[Image | None, str]:
    fh.seek(2)
    for _ in range(_MAX_SEGMENTS):
        byte = fh.read(1)
        if byte != b"\xff":
            break
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
        if not marker:
            break
        kind = marker[0]
        if kind in _NO_LENGTH:
            continue
        if kind in (0xD9, 0xDA):  # end of image, or the scan started before any frame header
            break
        raw = fh.read(2)
        if len(raw) < 2:
            break
        length = int.from_bytes(raw, "big")
        if length < 2 or fh.tell() + length - 2 > size:
            break
        if kind in _SOF:
            body = fh.read(5)
            if len(body) < 5:
                break
            height, width = struct.unpack(">HH", body[1:5])
            if width == 0 or height == 0:
                return None, f"a damaged JPEG (its frame header says {width}x{height})"
            return Image("JPEG", width, height), "a JPEG image"
        fh.seek(length - 2, os.SEEK_CUR)
    return None, "a damaged JPEG (no frame header with its width and height)"


def sniff(path: Path) -> tuple[Image | None, str]:
    """The PNG or JPEG image at ``path`` with its size, or None and what the file is instead ("text", "a GIF image", ...)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        head = fh.read(_HEAD)
        if head.startswith(PNG_MAGIC):
            return _png(head)
        if head.startswith(JPEG_MAGIC):
            return _jpeg(fh, st.st_size)
    return None, describe(head)
