"""Read a JPEG's frame size from its header, without decoding, to refuse bad frames early."""

from __future__ import annotations

# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


class InvalidFrame(ValueError):
    """The bytes are not a JPEG frame the pipeline accepts."""


def jpeg_size(data: bytes | memoryview) -> tuple[int, int]:
    """(height, width) from the first start-of-frame segment."""
    buf = bytes(data[:2]) if len(data) >= 2 else b""
    if buf != b"\xff\xd8":
        raise InvalidFrame("not a JPEG: missing the start-of-image marker")
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise InvalidFrame(f"corrupt JPEG header at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker in _SOF:
            if pos + 9 > n:
                break
            h = (data[pos + 5] << 8) | data[pos + 6]
            w = (data[pos + 7] << 8) | data[pos + 8]
            if h == 0 or w == 0:
                raise InvalidFrame(f"JPEG declares an empty frame ({w}x{h})")
            return h, w
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        pos += 2 + length
    raise InvalidFrame("truncated JPEG: no frame header found")


def check_frame(data: bytes | memoryview, *, max_pixels: int, max_side: int) -> tuple[int, int]:
    """The frame size, or :class:`InvalidFrame` naming why the frame is refused."""
    h, w = jpeg_size(data)
    if h > max_side or w > max_side or h * w > max_pixels:
        raise InvalidFrame(f"frame of {w}x{h} pixels exceeds the limit ({max_pixels} pixels, {max_side} per side)")
    return h, w
