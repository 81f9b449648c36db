"""Visual check of 3DMM fits: the fitted mesh over the frames, and the expression alone.

For each chosen frame of a clip: the frame with the fitted face mesh blended over it (shaded
by its normals), and the same expression on the ICT mean face seen from the front (identity
removed, as in the paper's figures). Writes a PNG grid, or an MP4 of the whole clip.
Usage: python -m training.render CLIP [--frames 6] [--mp4] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from fer3d_ros.core.expression.morphable_model import MorphableModel, load_landmark_model
from fer3d_ros.core.frontend.detection import default_detector
from fer3d_ros.core.frontend.landmarks import DlibLandmarker
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera
from training.media import detect_faces, read_frames
from training.paths import ICT_MODEL, OUT
from training.video_fit import clean_track, fit_landmark_track, smooth_track

SKIN = np.array([170, 190, 225], np.float64)  # BGR


def render_mesh(image: np.ndarray, vertices: np.ndarray, camera: ScaledOrthographicCamera,
                triangles: np.ndarray, opacity: float = 0.7) -> np.ndarray:
    """`image` with the mesh (vertices (V, 3), camera axes) drawn by the painter's algorithm."""
    rotated = vertices @ camera.rotation.T
    points = camera.scale * rotated[:, :2] + camera.translation
    corners = rotated[triangles]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    facing = normals[:, 2] < 0  # toward the camera (camera z points away from it)
    order = np.argsort(-corners[:, :, 2].mean(axis=1))  # far to near
    canvas, mask = image.copy(), np.zeros(image.shape[:2], np.uint8)
    polygons = np.round(points[triangles] * 16).astype(np.int32)  # 4 fractional bits
    for index in order[facing[order]]:
        colour = SKIN * (0.25 + 0.75 * -normals[index, 2])
        cv2.fillConvexPoly(canvas, polygons[index], colour.tolist(), cv2.LINE_AA, shift=4)
        cv2.fillConvexPoly(mask, polygons[index], 255, shift=4)
    blend = mask.astype(bool)
    result = image.copy()
    result[blend] = (opacity * canvas[blend] + (1 - opacity) * image[blend]).astype(np.uint8)
    return result


def frontal_expression(model: MorphableModel, expression: np.ndarray, size: int) -> np.ndarray:
    """The mean face with this expression, seen from the front, on a grey size x size square."""
    vertices = model.vertices(expression=expression)
    scale = size / 24.0
    camera = ScaledOrthographicCamera(scale, np.eye(3), np.array([size / 2, size / 2 - scale]))
    return render_mesh(np.full((size, size, 3), 60, np.uint8), vertices, camera, model.triangles, opacity=1.0)


def panel(frame: np.ndarray, model: MorphableModel, fit, row: int) -> np.ndarray:
    vertices = model.vertices(fit.identity, fit.expressions[row])
    overlay = render_mesh(frame, vertices, fit.cameras[row], model.triangles)
    height = 320
    overlay = cv2.resize(overlay, (overlay.shape[1] * height // overlay.shape[0], height))
    return np.hstack([overlay, frontal_expression(model, fit.expressions[row], height)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('clip', type=Path)
    parser.add_argument('--frames', type=int, default=6, help='frames in the PNG grid')
    parser.add_argument('--mp4', action='store_true', help='also write an MP4 of every frame')
    parser.add_argument('--out', type=Path, default=OUT / 'render')
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frames = list(read_frames(args.clip))
    detector, landmarker = default_detector(), DlibLandmarker()
    segment = max(clean_track([detect_faces(f, detector, landmarker) for f in frames]), key=lambda s: len(s.frames))
    fit = fit_landmark_track(*smooth_track(segment), load_landmark_model())
    model = MorphableModel.load(ICT_MODEL)
    rows = np.linspace(0, len(fit.frames) - 1, args.frames).round().astype(int)
    panels = [panel(frames[fit.frames[r]], model, fit, r) for r in rows]
    grid = np.vstack([np.hstack(panels[i:i + 2]) for i in range(0, len(panels) - 1, 2)])
    png = args.out / f'{args.clip.stem}_fit.png'
    cv2.imwrite(str(png), grid)
    print(f'wrote {png} (mean reprojection {fit.reprojection_px.mean():.2f} px, '
          f'|i|^2 {fit.identity @ fit.identity:.0f})')
    if args.mp4:
        first = panel(frames[fit.frames[0]], model, fit, 0)
        video = cv2.VideoWriter(str(args.out / f'{args.clip.stem}_fit.mp4'), cv2.VideoWriter_fourcc(*'mp4v'),
                                30.0, (first.shape[1], first.shape[0]))
        for row, frame_index in enumerate(fit.frames):
            video.write(panel(frames[frame_index], model, fit, row))
        video.release()
        print(f'wrote {args.out / f"{args.clip.stem}_fit.mp4"}')


if __name__ == '__main__':
    main()
