"""Image message <-> NumPy conversion cost at 640x480 (goals: < 0.1 ms to NumPy, < 1 ms back)."""
import numpy as np
from benchlib import percentiles

from fer3d_ros.core.image_conversion import image_to_numpy, message_to_bgr8, numpy_to_image


def main():
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    msg = numpy_to_image(frame, 'bgr8')
    rgb = numpy_to_image(frame[..., ::-1].copy(), 'rgb8')
    cases = [
        ('Image bgr8 -> NumPy (view)', lambda: image_to_numpy(msg), 0.1),
        ('NumPy -> Image bgr8', lambda: numpy_to_image(frame, 'bgr8'), 1.0),
        ('Image rgb8 -> bgr8 (copy)', lambda: message_to_bgr8(rgb), None),


    ]
    print(f'{"640x480 conversion":34s} {"median ms":>10s} {"p95 ms":>8s}  goal')
    for name, fn, goal in cases:
        median, p95 = percentiles(fn, repeats=2000)
        verdict = '' if goal is None else (
            f'< {goal} ms: {"ok" if median < goal else "MISSED"} ({goal / median:.0f}x margin)')
        print(f'{name:34s} {median:10.4f} {p95:8.4f}  {verdict}')


if __name__ == '__main__':
    main()
