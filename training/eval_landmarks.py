"""Landmark accuracy of the front end on every image with ground truth in ../shared/data/landmarks68.

Prints, per image, the normalised mean error (NME: mean point error / outer-eye-corner distance)
of detector + landmarker, then the mean and median. With --calibrate-box it also prints the
median RetinaFace -> dlib-HOG box relation that landmarks.BOX_TO_DLIB holds.
Usage: python -m training.eval_landmarks [--root DIR] [--calibrate-box]
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from fer3d_ros.core.detection import Detection, default_detector
from fer3d_ros.core.landmarks import DlibLandmarker
from fer3d_ros.core.tracking import box_iou
from training.landmark_sets import DEFAULT_ROOT, AnnotatedImage, load_landmark_sets, normalised_mean_error


def ground_truth_box(landmarks: np.ndarray) -> np.ndarray:
    return np.r_[landmarks.min(axis=0), landmarks.max(axis=0)]


def matching_detection(detections: list[Detection], item: AnnotatedImage) -> tuple[Detection | None, float]:
    """The detection overlapping the ground-truth face most, and that IoU."""
    if not detections:
        return None, 0.0
    overlaps = box_iou(ground_truth_box(item.landmarks)[None], np.array([d.box for d in detections]))[0]
    best = int(overlaps.argmax())
    return detections[best], float(overlaps[best])


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', default=DEFAULT_ROOT)
    parser.add_argument('--calibrate-box', action='store_true')
    args = parser.parse_args()
    items = load_landmark_sets(args.root)
    detector, landmarker = default_detector(), DlibLandmarker()
    errors = []
    print(f'{"image":42s} {"IoU":>5s} {"NME":>7s}')
    for item in items:
        image = cv2.imread(str(item.image_path))
        detection, iou = matching_detection(detector.detect(image), item)
        if detection is None or iou < 0.3:
            print(f'{item.name:42s} {iou:5.2f}  no face found (counted as NME 1.0)')
            errors.append(1.0)
            continue
        points = landmarker(image, np.array([detection.box]), detection.keypoints5[None, :2])[0]
        errors.append(normalised_mean_error(points, item.landmarks))
        print(f'{item.name:42s} {iou:5.2f} {errors[-1]:7.4f}')
    errors = np.array(errors)
    print(f'NME over {len(errors)} images: mean {errors.mean():.4f}, median {np.median(errors):.4f}, '
          f'{(errors <= 0.05).sum()}/{len(errors)} images <= 0.05 (goal 0.05)')
    if args.calibrate_box:
        print('RetinaFace -> dlib box (shift x, shift y, scale w, scale h):',
              np.round(calibrate_box(items), 3).tolist())


if __name__ == '__main__':
    main()
