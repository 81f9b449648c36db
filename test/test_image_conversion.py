"""Image messages <-> NumPy: every encoding, padded rows, byte order, compression, bad input."""
import array

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.image_conversion import (
    ENCODINGS,
    ImageConversionError,
    compressed_to_numpy,
    image_to_numpy,
    message_to_bgr8,
    numpy_to_compressed,
    numpy_to_image,
    to_bgr8,
)

RNG = np.random.default_rng(7)


def _random_pixels(encoding, height=31, width=17):
    enc = ENCODINGS[encoding]
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    if enc.dtype.kind == 'f':
        return RNG.standard_normal(shape).astype(enc.dtype)
    return RNG.integers(0, np.iinfo(enc.dtype).max, shape, dtype=enc.dtype, endpoint=True)


def _image(pixels, encoding, step, big_endian=False):
    """A message built by hand (not by the code under test), rows padded to `step` bytes."""
    height = pixels.shape[0]
    dtype = pixels.dtype.newbyteorder('>' if big_endian else '<')
    rows = np.ascontiguousarray(pixels, dtype=dtype).reshape(height, -1).view(np.uint8)
    padded = np.full((height, step), 0xAB, np.uint8)
    padded[:, :rows.shape[1]] = rows
    return Image(height=height, width=pixels.shape[1], encoding=encoding, step=step,
                 is_bigendian=big_endian, data=array.array('B', padded.tobytes()))


@pytest.mark.parametrize('encoding', list(ENCODINGS))
def test_round_trip_is_exact_for_every_encoding(encoding):
    pixels = _random_pixels(encoding)
    msg = numpy_to_image(pixels, encoding)
    assert msg.step == pixels.nbytes // pixels.shape[0]
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


@pytest.mark.parametrize('encoding', list(ENCODINGS))
def test_padded_rows_are_skipped(encoding):
    pixels = _random_pixels(encoding)
    row_bytes = pixels.nbytes // pixels.shape[0]
    np.testing.assert_array_equal(image_to_numpy(_image(pixels, encoding, row_bytes + 13)), pixels)


@pytest.mark.parametrize('encoding', ['mono16', '16UC1', '32FC1', 'bgr8'])
def test_big_endian_data_is_read_in_the_right_byte_order(encoding):
    pixels = _random_pixels(encoding)
    msg = _image(pixels, encoding, pixels.nbytes // pixels.shape[0] + 4, big_endian=True)
    result = image_to_numpy(msg)
    np.testing.assert_array_equal(result, pixels)
    assert result.dtype.isnative


def test_native_images_are_views_of_the_message_buffer():
    msg = numpy_to_image(_random_pixels('bgr8', 48, 64), 'bgr8')
    assert np.shares_memory(image_to_numpy(msg), np.frombuffer(msg.data, np.uint8))


def test_header_is_kept():
    msg = numpy_to_image(_random_pixels('mono8'), 'mono8')
    msg.header.frame_id = 'camera'
    assert numpy_to_image(_random_pixels('mono8'), 'mono8', header=msg.header).header.frame_id == 'camera'


@pytest.mark.parametrize('change, message', [
    (dict(encoding='yuv422'), "unsupported image encoding 'yuv422'"),
    (dict(height=0), 'empty image'),
    (dict(width=0), 'empty image'),
    (dict(step=10), 'step 10 is smaller than'),
    (dict(data=array.array('B', bytes(100))), 'the message is truncated'),
])
def test_inconsistent_messages_raise_a_clear_error(change, message):
    msg = numpy_to_image(_random_pixels('bgr8'), 'bgr8')
    for field, value in change.items():
        setattr(msg, field, value)
    with pytest.raises(ImageConversionError, match=message):
        image_to_numpy(msg)


@pytest.mark.parametrize('pixels, encoding, message', [
    (np.zeros((4, 4, 3), np.uint8), 'mono8', r'needs an array of shape \(H, W\)'),
    (np.zeros((4, 4), np.float64), '32FC1', 'needs float32 pixels'),
    (np.zeros((0, 4, 3), np.uint8), 'bgr8', 'empty image'),
    (np.zeros((4, 4, 3), np.uint8), 'bayer_rggb8', 'unsupported image encoding'),
])
def test_wrong_arrays_are_refused(pixels, encoding, message):
    with pytest.raises(ImageConversionError, match=message):
        numpy_to_image(pixels, encoding)


def _smooth_bgr(height=48, width=64):
    """JPEG-friendly content (noise would not survive compression)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8', 'bgra8', 'rgba8', 'mono8', 'mono16'])
def test_png_round_trip_is_lossless(encoding):
    pixels = _random_pixels(encoding)
    decoded, decoded_encoding = compressed_to_numpy(numpy_to_compressed(pixels, encoding, 'png'))
    assert decoded_encoding == encoding
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8'])
def test_jpeg_round_trip_is_close(encoding):
    pixels = _smooth_bgr()
    msg = numpy_to_compressed(pixels, encoding, 'jpeg', quality=95)
    assert msg.format == f'{encoding}; jpeg compressed bgr8'
    decoded, decoded_encoding = compressed_to_numpy(msg)
    assert decoded_encoding == encoding
    assert np.abs(decoded.astype(int) - pixels).mean() < 2.0


def test_plain_format_strings_are_understood():
    msg = numpy_to_compressed(_smooth_bgr(), 'bgr8', 'png')
    msg.format = 'png'
    decoded, encoding = compressed_to_numpy(msg)
    assert encoding == 'bgr8' and decoded.shape == (48, 64, 3)


@pytest.mark.parametrize('fmt, data, message', [
    ('jpeg', b'', 'empty compressed image'),
    ('jpeg', b'\xff\xd8 definitely not a jpeg', 'corrupt image data'),
    ('16UC1; compressedDepth', b'\x00' * 20, "unsupported compressed format"),
])
def test_corrupt_compressed_images_raise_a_clear_error(fmt, data, message):
    with pytest.raises(ImageConversionError, match=message):
        compressed_to_numpy(CompressedImage(format=fmt, data=array.array('B', data)))


@pytest.mark.parametrize('encoding', list(ENCODINGS))
def test_every_encoding_converts_to_bgr8(encoding):
    pixels = _random_pixels(encoding)
    bgr = to_bgr8(pixels, encoding)
    assert bgr.shape == (31, 17, 3) and bgr.dtype == np.uint8


def test_colour_order_is_respected():
    bgr = _smooth_bgr()
    rgb = bgr[..., ::-1].copy()
    np.testing.assert_array_equal(message_to_bgr8(numpy_to_image(rgb, 'rgb8')), bgr)
    np.testing.assert_array_equal(message_to_bgr8(numpy_to_compressed(bgr, 'bgr8', 'png')), bgr)
