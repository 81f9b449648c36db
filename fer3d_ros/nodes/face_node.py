"""face_node: image -> faces (FaceArray) with ids, boxes, 68 landmarks, head pose and aligned crops."""
from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FrontEndSettings
from fer3d_ros.core.image_conversion import ImageConversionError, message_to_bgr8
from fer3d_ros.msg import FaceArray
from fer3d_ros.nodes.common import RELIABLE_QOS, StageNode, guarded, run_node
from fer3d_ros.nodes.image_input import ImageInput, ImageInputSettings
from fer3d_ros.nodes.messages import face_message


class FaceNode(StageNode):
    input_settings_class = ImageInputSettings
    settings_class = FrontEndSettings

    def __init__(self, **kwargs) -> None:
        super().__init__('face_node', **kwargs)
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

    def on_image(self, msg: Image | CompressedImage) -> None:
        start = time.perf_counter()
        image = message_to_bgr8(msg, self.input_settings.value.max_image_pixels)
        result = self.stage.process(np.ascontiguousarray(image))
        out = FaceArray(header=msg.header, image_width=image.shape[1], image_height=image.shape[0],
                        faces=[face_message(face, msg.header) for face in result.faces])
        self.publisher.publish(out)
        self.diagnostics.record(time.perf_counter() - start)


def main(args: list[str] | None = None) -> int:
    return run_node(FaceNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
