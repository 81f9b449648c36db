"""expression_node: faces (FaceArray with aligned crops) -> expressions (ExpressionArray).

Every face's coefficients come raw and, once its track has seen the person at rest, calibrated
against that person's neutral (core.calibration); `~/reset_calibration` (std_srvs/Trigger) starts
every track's calibration again.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from std_srvs.srv import Trigger

from fer3d_ros.core.action_units import ActionUnitReader, shipped_presence
from fer3d_ros.core.calibration import CalibrationSettings, Calibrator
from fer3d_ros.core.expression import default_regressor
from fer3d_ros.core.image_conversion import ImageConversionError, message_to_bgr8
from fer3d_ros.core.motion import MM_PER_CM, HeadPose, MotionTracker, load_motion_model
from fer3d_ros.core.pose import ScaledOrthographicCamera, rotation_from_euler
from fer3d_ros.msg import (
    ActionUnit,
    ActionUnitArray,
    Expression,
    ExpressionArray,
    FaceActionUnits,
    FaceArray,
    FaceMotion,
    FaceMotionArray,
)
from fer3d_ros.nodes.common import (
    RELIABLE_QOS,
    Diagnostics,
    declare,
    declare_library_threads,
    guarded,
    report_problems,
    run_node,
)
from fer3d_ros.nodes.image_input import FrameAccount

# Calibration is kept for at most this many tracks per max_faces (the least recently seen dropped):
# a crowd whose faces flicker around the limit, or a flood of new ids, cannot grow memory unbounded.
CALIBRATED_TRACKS_PER_FACE = 2


class ExpressionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('expression_node', **kwargs)
        declare_library_threads(self)
        self.regressor = default_regressor(
            declare(self, 'model', '', 'DeepExp3D ONNX model (with its .json card beside it); '
                    'empty = the shipped models/deepexp3d_mnv2_96.onnx.') or None,
            backend=declare(self, 'backend', 'auto', 'auto (TensorRT when available, else ONNX Runtime), '
                            'tensorrt or onnxruntime.'),
            engine_path=declare(self, 'engine', '', 'Prebuilt TensorRT engine; empty = the cache path keyed '
                                'by GPU, TensorRT version and precision.') or None,
            threads=declare(self, 'threads', 1, 'ONNX Runtime threads.', minimum=1, maximum=64),
            allow_engine_build=declare(self, 'allow_engine_build', False,
                                       'Build a missing TensorRT engine at start (minutes) instead of failing.'),
            max_batch=declare(self, 'max_batch', 16, 'Most faces per inference call.', minimum=1, maximum=256))
        self.only_confirmed = declare(self, 'only_confirmed', False,
                                      'Skip faces whose track is not confirmed yet (Face.confirmed).',
                                      on_change=lambda value: setattr(self, 'only_confirmed', value))
        self.max_faces = declare(self, 'max_faces', 32,
                                 'Most faces of a FaceArray that are processed; beyond it the largest boxes are kept. '
                                 'Each face costs inference and calibration time (~15 ms on a CPU) and calibration '
                                 'memory, so one crowded or malformed frame cannot stall the node.',
                                 minimum=1, maximum=1000, on_change=self.set_max_faces)
        queue_size = declare(self, 'queue_size', 1,
                             'FaceArrays waiting while the network runs; older ones are dropped, so the '
                             'output stays current when inference is slower than the camera.',
                             minimum=1, maximum=100)
        self.calibrator = self._declare_calibration() if declare(
            self, 'calibration.enabled', True, 'Learn each tracked person\'s neutral face on line and publish '
            'calibrated (neutral-relative) coefficients beside the raw ones.') else None
        self.diagnostics = Diagnostics(self)
        self.create_service(Trigger, '~/reset_calibration', self.on_reset_calibration)
        self.publisher = self.create_publisher(ExpressionArray, 'expressions', RELIABLE_QOS)
        self.action_units = ActionUnitReader(self.regressor.card.expression_names,
                                             shipped_presence(self.regressor.card.model_id))
        self.au_publisher = self.create_publisher(ActionUnitArray, 'action_units', RELIABLE_QOS)
        self.motion = MotionTracker()
        self.motion_vertices = load_motion_model()[1].astype(np.uint32)  # the same in every FaceMotionArray
        self.motion_publisher = self.create_publisher(FaceMotionArray, 'face_motion', RELIABLE_QOS)
        callback = guarded(self, self.diagnostics, (ImageConversionError, ValueError))(self.on_faces)
        # FaceArrays replaced in the queue while the network ran are counted (face_arrays_skipped_busy)
        self.face_arrays = FrameAccount('face_arrays')
        self.create_subscription(FaceArray, 'faces', self.face_arrays.counting(callback),
                                 QoSProfile(depth=queue_size, reliability=ReliabilityPolicy.RELIABLE))
        card = self.regressor.card
        self.get_logger().info(f'ready: {card.model_id} ({card.input_size} px) on {self.regressor.backend.name}')

    def _declare_calibration(self) -> Calibrator:
        defaults = CalibrationSettings()
        settings = CalibrationSettings(
            max_activity_mm=declare(self, 'calibration.max_activity_mm', defaults.max_activity_mm,
                                    'A frame is neutral evidence below this RMS landmark displacement from the '
                                    'person\'s neutral shape (mm); 1.2 passes 90 % of CK+ neutral frames.',
                                    minimum=0.1, maximum=20.0,
                                    on_change=lambda value: self.calibrator.configure(max_activity_mm=value)),
            max_angle_deg=declare(self, 'calibration.max_angle_deg', defaults.max_angle_deg,
                                  'Head pitch and yaw (degrees) beyond which a frame is not neutral evidence.',
                                  minimum=1.0, maximum=90.0,
                                  on_change=lambda value: self.calibrator.configure(max_angle_deg=value)),
            window=declare(self, 'calibration.window', defaults.window,
                           'Neutral frames kept per track (bounded memory: 55 floats each).', minimum=1,
                           maximum=100000),
            frames_for_confidence=declare(self, 'calibration.frames_for_confidence', defaults.frames_for_confidence,
                                          'Neutral frames that bring the confidence to 0.63 (1 - exp(-n / this)).',
                                          minimum=1.0, maximum=100000.0,
                                          on_change=lambda value: self.calibrator.configure(
                                              frames_for_confidence=value)))
        forget_after = declare(self, 'calibration.forget_after', 2.0,
                               'Seconds after which a face that left the view loses its calibration.',
                               minimum=0.01, maximum=3600.0,
                               on_change=lambda value: self.calibrator.configure(forget_after=value))
        return Calibrator(len(self.regressor.card.expression_names), settings, forget_after=forget_after,
                          max_tracks=CALIBRATED_TRACKS_PER_FACE * self.max_faces)

    def set_max_faces(self, value: int) -> None:
        self.max_faces = value
        if self.calibrator is not None:
            self.calibrator.tracks.max_states = CALIBRATED_TRACKS_PER_FACE * value

    def on_reset_calibration(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.calibrator is None:
            response.success, response.message = False, 'calibration is disabled (calibration.enabled: false)'
            return response
        dropped = len(self.calibrator)
        self.calibrator.reset()
        self.get_logger().info(f'calibration reset on request: {dropped} track(s) start again')
        response.success, response.message = True, f'calibration of {dropped} track(s) dropped'
        return response

    def largest(self, faces: list) -> list:
        """The max_faces faces with the largest boxes, in their order; the others are counted and said."""
        if len(faces) <= self.max_faces:
            return faces
        areas = np.nan_to_num([face.width * face.height for face in faces], nan=0.0)
        kept = np.sort(np.argsort(-areas, kind='stable')[:self.max_faces])
        self.diagnostics.dropped += len(faces) - self.max_faces
        self.get_logger().warning(f'{len(faces)} faces in one frame, more than max_faces ({self.max_faces}): '
                                  'only the largest processed', throttle_duration_sec=1.0)
        return [faces[k] for k in kept]

    def read_crop(self, face) -> np.ndarray | None:
        """The face's aligned crop as bgr8, whatever its encoding; None (reported) if it has none or
        it cannot be read: that face is skipped, the others of its frame are not."""
        try:
            if face.crop.width == 0 or face.crop.height == 0:
                raise ImageConversionError('no aligned crop (set face_node publish_crops to true)')
            return message_to_bgr8(face.crop)
        except ImageConversionError as error:
            self.bad_face(face.id, f'{error}; skipped')
            return None

    def bad_face(self, face_id: str, problem: str) -> None:
        """Note what was wrong with one face of the frame (said with the others at the frame's end)."""
        self._problems.append(f'face {face_id}: {problem}')

    def calibrate(self, msg: FaceArray, faces: list, coefficients: np.ndarray) -> list[Expression]:
        """Expression messages with the calibration of every face whose track has one."""
        expressions = [Expression(id=face.id, coefficients=values) for face, values in zip(faces, coefficients)]
        if self.calibrator is None:
            return expressions
        if self.calibrator.new_frame(Time.from_msg(msg.header.stamp).nanoseconds * 1e-9):
            self.get_logger().info('time went backwards (a replayed bag?): calibration of every track restarted')
        for face, expression in zip(faces, expressions):
            try:
                result = self.calibrator.update(face.id, face.landmarks, expression.coefficients,
                                                (face.roll, face.pitch, face.yaw))
            except ValueError as error:  # this face stays uncalibrated; the others go on
                self.bad_face(face.id, f'{error}; published uncalibrated')
                continue
            if result.coefficients is not None:
                expression.calibrated = result.coefficients
                expression.calibration_confidence = result.confidence
        self.diagnostics.extra['calibrated_tracks'] = str(len(self.calibrator))
        return expressions

    def on_faces(self, msg: FaceArray) -> None:
        self._problems: list[str] = []
        try:
            self.process_faces(msg)
        finally:
            report_problems(self, self.diagnostics, 'faces of one frame', self._problems)

    def process_faces(self, msg: FaceArray) -> None:
        start = time.perf_counter()
        faces = self.largest([face for face in msg.faces if face.confirmed or not self.only_confirmed])
        readable = [(face, crop) for face in faces if (crop := self.read_crop(face)) is not None]
        faces = [face for face, _ in readable]
        coefficients = self.regressor.predict([crop for _, crop in readable])
        expressions = self.calibrate(msg, faces, coefficients)
        self.publisher.publish(ExpressionArray(
            header=msg.header, model_id=self.regressor.card.model_id,
            names=list(self.regressor.card.expression_names), expressions=expressions))
        if self.au_publisher.get_subscription_count():  # read only while someone listens
            self.au_publisher.publish(self.action_unit_message(msg.header, expressions))
        if self.motion_publisher.get_subscription_count():  # large: computed only while someone listens
            self.motion_publisher.publish(self.motion_message(msg.header, faces, expressions, msg.image_width,
                                                              msg.image_height))
        latency = time.perf_counter() - start
        self.diagnostics.extra.update(self.face_arrays.figures(), faces_last_frame=str(len(faces)))
        self.diagnostics.record(latency)

    def action_unit_message(self, header, expressions: list[Expression]) -> ActionUnitArray:
        """The action units of every face, from its raw and (where it has one) calibrated coefficients."""
        reader = self.action_units
        raw = reader.read(np.array([e.coefficients for e in expressions]).reshape(len(expressions), -1))
        calibrated = np.full_like(raw.intensities, np.nan)
        rows = [row for row, expression in enumerate(expressions) if len(expression.calibrated)]
        if rows:
            calibrated[rows] = reader.intensities(np.array([expressions[row].calibrated for row in rows]))
        return ActionUnitArray(header=header, model_id=self.regressor.card.model_id, faces=[
            FaceActionUnits(id=expression.id, action_units=[
                ActionUnit(number=au.number, name=au.name, intensity=float(raw.intensities[row, k]),
                           calibrated_intensity=float(calibrated[row, k]), probability=float(raw.probabilities[row, k]),
                           present=bool(raw.present[row, k]), level=raw.levels[row][k])
                for k, au in enumerate(reader.units)])
            for row, expression in enumerate(expressions)])

    def motion_message(self, header, faces: list, expressions: list[Expression], width: int,
                       height: int) -> FaceMotionArray:
        """Each face's 3D motion since its previous frame (faces on their first frame are left out)."""
        if self.motion.new_frame(Time.from_msg(header.stamp).nanoseconds * 1e-9):
            self.get_logger().info('time went backwards (a replayed bag?): face motion of every track restarted')
        out = FaceMotionArray(header=header, vertices=self.motion_vertices)
        for face, expression in zip(faces, expressions):
            person = self.calibrator.person(face.id) if self.calibrator is not None else None
            if person is None:  # no calibration: the mean identity and face_node's head pose
                identity = None
                camera = ScaledOrthographicCamera(face.scale, rotation_from_euler(face.roll, face.pitch, face.yaw),
                                                  np.array([face.tx, face.ty]))
            else:
                identity, camera = person
            pose = HeadPose.seen_by(camera, width, height)
            motion = self.motion.update(face.id, identity, np.asarray(expression.coefficients), pose)
            if motion is not None:
                out.faces.append(FaceMotion(id=face.id, positions=motion.positions.astype(np.float32).ravel(),
                                            pixels_per_mm=pose.scale / MM_PER_CM,
                                            rigid=motion.rigid.astype(np.float32).ravel(),
                                            nonrigid=motion.nonrigid.astype(np.float32).ravel()))
        return out


def main(args: list[str] | None = None) -> int:
    return run_node(ExpressionNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
