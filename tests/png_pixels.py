"""Decode an 8-bit RGB/RGBA PNG (what chromium's --screenshot writes) into a numpy array, to check
that a screenshot really shows something, without an imaging library."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    if not data.startswith(SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    position, chunks, header = len(SIGNATURE), [], None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    if header is None:
        raise ValueError(f"{path} has no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: only 8-bit, non-interlaced RGB or RGBA is supported")
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8).reshape(height, stride + 1)
    image = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int64)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1)
        elif kind == 2:  # Up
            row = line + previous
        else:  # Average and Paeth depend on the byte just decoded: byte by byte
            up = previous.astype(np.int64)
            values = line.tolist()
            for x in range(stride):
                left = values[x - channels] if x >= channels else 0
                upper_left = int(up[x - channels]) if x >= channels else 0
                predictor = (left + int(up[x])) // 2 if kind == 3 else _paeth(left, int(up[x]), upper_left)
                values[x] = (values[x] + predictor) & 0xFF
            row = np.array(values, dtype=np.int64)
        image[y] = (row & 0xFF).astype(np.uint8)
        previous = image[y]
    return image.reshape(height, width, channels)
