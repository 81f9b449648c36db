"""Conversion between ROS image messages and NumPy arrays, without cv_bridge.

Raw images (`sensor_msgs/Image`) are read as zero-copy views of the message buffer whenever the
byte order is native, so converting a 640x480 bgr8 frame costs microseconds. Messages are
duck-typed (anything with the fields of the message works), so this module needs no ROS to
read; only building messages imports `sensor_msgs`.
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """An image message or array that cannot be converted; the text says why and how to fix it."""


@dataclass(frozen=True)
class Encoding:
    dtype: np.dtype
    channels: int


# The encodings of sensor_msgs/image_encodings.hpp that a face pipeline meets.
ENCODINGS: dict[str, Encoding] = {
    'bgr8': Encoding(np.dtype(np.uint8), 3),
    'rgb8': Encoding(np.dtype(np.uint8), 3),
    'bgra8': Encoding(np.dtype(np.uint8), 4),
    'rgba8': Encoding(np.dtype(np.uint8), 4),
    'mono8': Encoding(np.dtype(np.uint8), 1),
    '8UC1': Encoding(np.dtype(np.uint8), 1),
    '8UC3': Encoding(np.dtype(np.uint8), 3),
    'mono16': Encoding(np.dtype(np.uint16), 1),
    '16UC1': Encoding(np.dtype(np.uint16), 1),
    '32FC1': Encoding(np.dtype(np.float32), 1),
}
_SUPPORTED = ', '.join(ENCODINGS)
# The largest image taken by default: 8K UHD, beyond any camera a face pipeline meets. A 380 kB PNG
# can decode to 20000x20000 (1.2 GB as bgr8); its size is read from the header before decoding.
MAX_IMAGE_PIXELS = 7680 * 4320
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_JPEG_FRAME_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_LITTLE_ENDIAN_HOST = sys.byteorder == 'little'


def _encoding(name: str) -> Encoding:
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding '{name}'; supported: {_SUPPORTED} "
            '(convert the stream, e.g. with image_proc, or publish one of these)') from None


def image_to_numpy(msg) -> np.ndarray:
    """Return the pixels of a `sensor_msgs/Image` as an (H, W) or (H, W, C) array.

    The array is a view of `msg.data` when the byte order is native (no copy): copy it before
    changing the message. Row padding (`step` > width * pixel size) is skipped.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image: {width}x{height} pixels, encoding '{msg.encoding}'")
    enc = _encoding(msg.encoding)
    row_bytes = width * enc.channels * enc.dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f'step {step} is smaller than width x pixel size = {width} x '
            f'{enc.channels * enc.dtype.itemsize} = {row_bytes} bytes ({msg.encoding})')
    buffer = np.frombuffer(msg.data, np.uint8)
    if buffer.size < step * height:
        raise ImageConversionError(
            f'image data has {buffer.size} bytes, fewer than step x height = {step} x {height} = '
            f'{step * height} ({width}x{height} {msg.encoding}); the message is truncated')
    rows = buffer[:step * height].reshape(height, step)[:, :row_bytes]
    big_endian = bool(msg.is_bigendian)
    pixels = rows.view(enc.dtype.newbyteorder('>' if big_endian else '<'))
    if enc.dtype.itemsize > 1 and big_endian == _LITTLE_ENDIAN_HOST:
        pixels = pixels.astype(enc.dtype)  # swap to native order (one copy)
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    return pixels.reshape(shape)


def numpy_to_image(pixels: np.ndarray, encoding: str, header=None):
    """Build a `sensor_msgs/Image` (native byte order, no row padding) from an array."""
    from sensor_msgs.msg import Image

    enc = _encoding(encoding)
    _check_array(pixels, enc, encoding)
    pixels = np.ascontiguousarray(pixels, dtype=enc.dtype.newbyteorder('='))
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = not _LITTLE_ENDIAN_HOST and enc.dtype.itemsize > 1
    msg.step = msg.width * enc.channels * enc.dtype.itemsize
    msg.data = _byte_array(pixels)
    return msg


def _byte_array(pixels: np.ndarray) -> array.array:
    """The bytes of a C-contiguous array as array('B'), which rclpy stores without conversion.

    One memcpy: ~7x faster than array('B', pixels.tobytes()), which iterates over the bytes, and
    far faster than assigning a NumPy array, which rclpy converts element by element.
    """
    data = array.array('B')
    data.frombytes(pixels.data.cast('B'))
    return data


def _check_array(pixels: np.ndarray, enc: Encoding, encoding: str) -> None:
    expected = '(H, W)' if enc.channels == 1 else f'(H, W, {enc.channels})'
    shape_ok = (pixels.ndim == 2 and enc.channels == 1) or (
        pixels.ndim == 3 and pixels.shape[2] == enc.channels)
    if not shape_ok:
        raise ImageConversionError(f'{encoding} needs an array of shape {expected}, got {pixels.shape}')
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageConversionError(f'empty image: shape {pixels.shape}')
    if pixels.dtype.kind != enc.dtype.kind or pixels.dtype.itemsize != enc.dtype.itemsize:
        raise ImageConversionError(f'{encoding} needs {enc.dtype.name} pixels, got {pixels.dtype}')


def compressed_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, without decoding; None if the header says neither."""
    head = bytes(data[:65536]) if len(data) > 65536 else bytes(data)
    if head.startswith(_PNG_SIGNATURE) and head[12:16] == b'IHDR' and len(head) >= 24:
        return int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
    if not head.startswith(b'\xff\xd8'):
        return None
    position = 2
    while position + 9 <= len(head):  # JPEG segments: FF marker, 2-byte length, payload
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_FRAME_MARKERS:  # length, precision, height, width
            return int.from_bytes(head[position + 7:position + 9], 'big'), \
                int.from_bytes(head[position + 5:position + 7], 'big')
        if marker == 0xDA:  # start of scan before any frame header
            return None
        position += 2 if 0xD0 <= marker <= 0xD7 or marker == 0x01 else \
            2 + int.from_bytes(head[position + 2:position + 4], 'big')
    return None


def check_size(width: int, height: int, max_pixels: int, what: str) -> None:
    """ImageConversionError if a `width` x `height` image is larger than `max_pixels`."""
    if width * height > max_pixels:
        raise ImageConversionError(
            f'{what} of {width}x{height} pixels ({width * height / 1e6:.1f} MP) is larger than the '
            f'{max_pixels / 1e6:.1f} MP allowed; skipped (raise the node\'s max_image_pixels if frames this large '
            'are meant)')


def check_message_size(msg, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """ImageConversionError if an Image, or a CompressedImage by its header, is larger than `max_pixels`
    (a compressed one whose header cannot be read is left to the decoder)."""
    if hasattr(msg, 'format'):
        size = compressed_size(np.frombuffer(msg.data, np.uint8))
        if size is not None:
            check_size(*size, max_pixels, f'a {msg.format} image')
    else:
        check_size(int(msg.width), int(msg.height), max_pixels, f'a {msg.encoding} image')


def compressed_to_numpy(msg, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, str]:
    """Decode a `sensor_msgs/CompressedImage` (jpeg or png); return (pixels, encoding).

    An image whose header says it is larger than `max_pixels` is refused before it is decoded.

    The encoding is the one the publisher declared in `format` as image_transport writes it
    ("rgb8; jpeg compressed bgr8"), else what the decoder produced (bgr8, bgra8, mono8, mono16).
    """
    fmt = str(msg.format).strip().lower()
    if not any(kind in fmt for kind in ('jpeg', 'jpg', 'png')):
        raise ImageConversionError(
            f"unsupported compressed format '{msg.format}': expected jpeg or png "
            "(image_transport's compressed plugin; compressedDepth is not supported)")
    data = np.frombuffer(msg.data, np.uint8)
    if data.size == 0:
        raise ImageConversionError(f'empty compressed image ({msg.format})')
    check_message_size(msg, max_pixels)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise ImageConversionError(f'cannot decode {data.size} bytes as {msg.format}: corrupt image data')
    decoded = _decoded_encoding(pixels)
    declared = fmt.split(';')[0].strip() if ';' in fmt else ''
    if declared in ('rgb8', 'rgba8') and decoded in ('bgr8', 'bgra8'):
        code = cv2.COLOR_BGR2RGB if declared == 'rgb8' else cv2.COLOR_BGRA2RGBA
        return cv2.cvtColor(pixels, code), declared
    return pixels, decoded


def _decoded_encoding(pixels: np.ndarray) -> str:
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.dtype == np.uint16 and channels == 1:
        return 'mono16'
    names = {1: 'mono8', 3: 'bgr8', 4: 'bgra8'}
    if pixels.dtype != np.uint8 or channels not in names:
        raise ImageConversionError(f'decoded image of {pixels.dtype} x {channels} channels is not supported')
    return names[channels]


def numpy_to_compressed(pixels: np.ndarray, encoding: str = 'bgr8', fmt: str = 'jpeg',
                        quality: int = 90, header=None):
    """Encode an array as a `sensor_msgs/CompressedImage` (jpeg or png), image_transport style."""
    from sensor_msgs.msg import CompressedImage

    enc = _encoding(encoding)
    _check_array(pixels, enc, encoding)
    if fmt not in ('jpeg', 'png'):
        raise ImageConversionError(f"unsupported compressed format '{fmt}': use 'jpeg' or 'png'")
    if fmt == 'jpeg' and enc.dtype != np.uint8:
        raise ImageConversionError(f'jpeg stores 8-bit images only, not {encoding}; use png')
    if enc.dtype == np.float32:
        raise ImageConversionError(f'{encoding} cannot be compressed losslessly; publish it raw')
    if encoding in ('rgb8', 'rgba8'):
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if encoding == 'rgb8' else cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg' else []
    ok, data = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', pixels, params)
    if not ok:
        raise ImageConversionError(f'OpenCV could not encode a {pixels.shape} {encoding} image as {fmt}')
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    stored = 'bgra8' if enc.channels == 4 else 'bgr8' if enc.channels == 3 else encoding
    msg.format = f'{encoding}; {fmt} compressed {stored}'
    msg.data = _byte_array(data)
    return msg


def to_bgr8(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Convert pixels of any supported encoding to the 8-bit BGR image the face pipeline uses.

    16-bit images are scaled by 1/256; 32FC1 is taken as intensity in [0, 1].
    """
    if encoding == 'bgr8' or encoding == '8UC3':
        return pixels
    if encoding in ('mono16', '16UC1'):
        pixels = (pixels >> 8).astype(np.uint8)
    elif encoding == '32FC1':
        pixels = (np.clip(np.nan_to_num(pixels), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    conversions = {'rgb8': cv2.COLOR_RGB2BGR, 'bgra8': cv2.COLOR_BGRA2BGR, 'rgba8': cv2.COLOR_RGBA2BGR}
    code = conversions.get(encoding, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(pixels, code)


def message_to_bgr8(msg, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Pixels of an Image or CompressedImage message as 8-bit BGR, whatever its encoding; an image
    larger than `max_pixels` is refused (ImageConversionError) before it is decoded or converted."""
    if hasattr(msg, 'format'):
        pixels, encoding = compressed_to_numpy(msg, max_pixels)
    else:
        check_message_size(msg, max_pixels)
        pixels, encoding = image_to_numpy(msg), msg.encoding
    return to_bgr8(pixels, encoding)
