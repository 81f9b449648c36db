"""face_node: image -> faces (FaceArray) with ids, boxes, 68 landmarks, head pose and aligned crops."""
from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FaceObservation, FrontEndSettings
from fer3d_ros.core.image_conversion import ImageConversionError, message_to_bgr8, numpy_to_image
from fer3d_ros.msg import Face, FaceArray
from fer3d_ros.nodes.common import RELIABLE_QOS, NodeSettings, StageNode, guarded, run_node
from fer3d_ros.nodes.image_input import ImageInput, ImageInputSettings


class FaceNode(StageNode):
    settings_class = FrontEndSettings

    def __init__(self, **kwargs) -> None:
        super().__init__('face_node', **kwargs)
        self.input_settings = NodeSettings(self, ImageInputSettings, self._apply_input_settings)
        self.image_input: ImageInput | None = None
        self.start()

    @property
    def front_end(self) -> FaceFrontEnd | None:
        return self.stage

    def make_stage(self) -> FaceFrontEnd:
        return FaceFrontEnd(self.settings.value)

    def make_outputs(self) -> list:
        self.publisher = self.create_publisher(FaceArray, 'faces', RELIABLE_QOS)
        return [self.publisher]

    def make_inputs(self) -> list:
        callback = guarded(self, self.diagnostics, (ImageConversionError, ValueError))(self.on_image)
        self.image_input = ImageInput(self, self.input_settings.value, callback, self.diagnostics)
        self.get_logger().info(f'ready: {self.stage.detector.backend.name} detector, landmarks from '
                               f'{self.stage.landmarker.model_path.name}, listening on {self.image_input}')
        return [self.image_input]

    def _apply_input_settings(self, settings: ImageInputSettings) -> None:
        if self.image_input is not None and self._inputs:
            self.image_input.apply(settings)

    def on_image(self, msg: Image | CompressedImage) -> None:
        start = time.perf_counter()
        image = message_to_bgr8(msg, self.input_settings.value.max_image_pixels)
        result = self.stage.process(np.ascontiguousarray(image))
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
