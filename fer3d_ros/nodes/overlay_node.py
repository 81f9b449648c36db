"""overlay_node: image + faces + emotions + stress (+ face motion) -> annotated debug image (debug/image),
only when watched (core.overlay keeps and draws)."""
from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from fer3d_ros.core.image_conversion import ImageConversionError, check_message_size, message_to_bgr8, numpy_to_image
from fer3d_ros.core.overlay import Overlay, OverlaySettings, stamp_key
from fer3d_ros.msg import EmotionArray, FaceArray, FaceMotionArray, StressArray
from fer3d_ros.nodes.diagnostics import guarded, report_problems
from fer3d_ros.nodes.image_input import ImageInput, ImageInputSettings
from fer3d_ros.nodes.process import run_node
from fer3d_ros.nodes.qos import RELIABLE_QOS
from fer3d_ros.nodes.stage_node import StageNode


class OverlayNode(StageNode):
    input_settings_class = ImageInputSettings
    settings_class = OverlaySettings

    def __init__(self, **kwargs) -> None:
        super().__init__('overlay_node', **kwargs)
        self.image_input: ImageInput | None = None
        self.unwatched_images = 0
        self.start()

    def make_stage(self) -> Overlay:
        return Overlay(self.settings.value)

    def make_outputs(self) -> list:
        self.publisher = self.create_publisher(Image, 'debug/image', RELIABLE_QOS)
        return [self.publisher]

    def make_inputs(self) -> list:
        guard = guarded(self, self.diagnostics, (ImageConversionError, ValueError))
        self.image_input = ImageInput(self, self.input_settings.value, guard(self.on_image), self.diagnostics)
        inputs = [self.image_input, self.create_subscription(FaceArray, 'faces', guard(self.on_faces), RELIABLE_QOS),
                  self.create_subscription(EmotionArray, 'emotions', guard(self.on_emotions), RELIABLE_QOS),
                  self.create_subscription(StressArray, 'stress', guard(self.on_stress), RELIABLE_QOS)]
        if self.settings.value.draw_motion:
            inputs.append(self.create_subscription(FaceMotionArray, 'face_motion', guard(self.on_motion),
                                                   RELIABLE_QOS))
        self.get_logger().info(f'ready: drawing {self.image_input} on debug/image while someone subscribes to it')
        return inputs

    def on_image(self, msg: Image | CompressedImage) -> None:
        if self.publisher.get_subscription_count() == 0:
            self.unwatched_images += 1  # nobody watches: neither kept nor drawn
            self.diagnostics.extra['unwatched_images'] = str(self.unwatched_images)
            return
        check_message_size(msg, self.input_settings.value.max_image_pixels)  # a huge frame is not kept
        key = stamp_key(msg.header)
        self.stage.images[key] = msg
        self.diagnostics.dropped = self.stage.images.evicted  # frames whose faces never came
        self.publish_if_complete(key)

    def on_faces(self, msg: FaceArray) -> None:
        key = stamp_key(msg.header)
        self.stage.faces[key] = msg
        self.publish_if_complete(key)

    def on_emotions(self, msg: EmotionArray) -> None:
        self.stage.emotions[stamp_key(msg.header)] = msg
        for emotion in msg.emotions:
            self.stage.latest_emotions[emotion.id] = emotion

    def on_stress(self, msg: StressArray) -> None:
        for stress in msg.stresses:
            self.stage.latest_stress[stress.id] = stress

    def on_motion(self, msg: FaceMotionArray) -> None:
        report_problems(self, self.diagnostics, 'face motion not drawn', self.stage.keep_motion(msg.faces))

    def publish_if_complete(self, key: int) -> None:
        """Draw and publish the image of `key` once both it and its faces are here."""
        complete = self.stage.take_complete(key)
        if complete is None:
            return
        start = time.perf_counter()
        source, faces, emotion_of = complete
        # a copy: never draw into the received message
        image = np.array(message_to_bgr8(source, self.input_settings.value.max_image_pixels))
        report_problems(self, self.diagnostics, 'faces drawn in part', self.stage.draw(image, faces, emotion_of))
        self.publisher.publish(numpy_to_image(image, 'bgr8', source.header))
        self.diagnostics.record(time.perf_counter() - start)


def main(args: list[str] | None = None) -> int:
    return run_node(OverlayNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
