"""face_node: image -> faces (FaceArray) with ids, boxes, 68 landmarks, head pose, aligned crops and,
once recognised, the person each face is (core.frontend.stage does the work).

`~/forget_person` (fer3d_ros/ForgetPerson) forgets one person or everyone; every person forgotten
(on request or after person.forget_after unseen) is announced on `people/forgotten`, so that the
other nodes drop that person's state too. With `ros4hri`, also REP-155's face topics (nodes/ros4hri.py).
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FrontEndSettings
from fer3d_ros.core.frontend.stage import FaceStage
from fer3d_ros.core.image_conversion import ImageConversionError, message_to_bgr8
from fer3d_ros.msg import FaceArray
from fer3d_ros.nodes.diagnostics import guarded
from fer3d_ros.nodes.image_input import ImageInput, ImageInputSettings
from fer3d_ros.nodes.messages import face_message
from fer3d_ros.nodes.process import run_node
from fer3d_ros.nodes.qos import RELIABLE_QOS
from fer3d_ros.nodes.ros4hri import FaceOutput, FaceRos4hriSettings
from fer3d_ros.nodes.stage_node import StageNode
from fer3d_ros.srv import ForgetPerson


class FaceNode(StageNode):
    input_settings_class = ImageInputSettings
    output_settings_class = FaceRos4hriSettings
    settings_class = FrontEndSettings

    def __init__(self, **kwargs) -> None:
        super().__init__('face_node', **kwargs)
        self.image_input: ImageInput | None = None
        self.hri: FaceOutput | None = None
        self.start()

    @property
    def front_end(self) -> FaceFrontEnd | None:
        return self.stage.front_end if self.stage else None

    def make_stage(self) -> FaceStage:
        return FaceStage(self.settings.value)

    def make_outputs(self) -> list:
        self.publisher = self.create_publisher(FaceArray, 'faces', RELIABLE_QOS)
        self.forgotten = self.create_publisher(String, 'people/forgotten', RELIABLE_QOS)
        output = self.output_settings
        self.hri = FaceOutput(self, output.ros4hri_face_size) if output.ros4hri else None
        return [self.publisher, self.forgotten, self.create_service(ForgetPerson, '~/forget_person', self.on_forget),
                *([self.hri] if self.hri else [])]

    def make_inputs(self) -> list:
        callback = guarded(self, self.diagnostics, (ImageConversionError, ValueError))(self.on_image)
        self.image_input = ImageInput(self, self.input_settings.value, callback, self.diagnostics)
        self.get_logger().info(f'ready: {self.front_end.detector.backend.name} detector, landmarks from '
                               f'{self.front_end.landmarker.model_path.name}, people '
                               f'{"recognised" if self.stage.people else "not recognised"}, listening on '
                               f'{self.image_input}')
        return [self.image_input]

    def on_forget(self, request: ForgetPerson.Request, response: ForgetPerson.Response) -> ForgetPerson.Response:
        if self.stage is None or self.stage.people is None:
            response.success, response.message = False, 'people are not recognised (person.enabled: false)'
            return response
        forgotten = self.stage.people.forget(request.person_id or None)
        self.announce_forgotten()
        response.success = bool(forgotten) or not request.person_id
        response.message = f'forgot {", ".join(forgotten) or "nobody"}'
        self.get_logger().info(f'on request: {response.message}')
        return response

    def announce_forgotten(self) -> None:
        for person_id in self.stage.people.take_forgotten() if self.stage.people else []:
            self.forgotten.publish(String(data=person_id))

    def on_image(self, msg: Image | CompressedImage) -> None:
        start = time.perf_counter()
        image = message_to_bgr8(msg, self.input_settings.value.max_image_pixels)
        result = self.stage.process(np.ascontiguousarray(image), Time.from_msg(msg.header.stamp).nanoseconds * 1e-9)
        out = FaceArray(header=msg.header, image_width=image.shape[1], image_height=image.shape[0],
                        faces=[face_message(face, msg.header) for face in result.faces])
        self.publisher.publish(out)
        if self.hri is not None:
            self.hri.publish(msg.header, image, result.faces)
        self.announce_forgotten()
        if self.stage.people is not None:
            self.diagnostics.extra.update(known_people=str(len(self.stage.people.people)),
                                          descriptors=str(self.stage.people.descriptors_computed))
        self.diagnostics.record(time.perf_counter() - start)


def main(args: list[str] | None = None) -> int:
    return run_node(FaceNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
