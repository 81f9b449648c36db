"""face_node's stage: the front end on each frame, and who each face is (core.people, on the side)."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from fer3d_ros.core.frontend.front_end import FaceFrontEnd, FrameResult, FrontEndSettings
from fer3d_ros.core.people import People


class FaceStage:
    def __init__(self, settings: FrontEndSettings | None = None, people: People | None = None,
                 front_end: FaceFrontEnd | None = None) -> None:
        self.front_end = front_end or FaceFrontEnd(settings)
        self.settings = self.front_end.settings
        self.people = people or (People(self.settings.person) if self.settings.person.enabled else None)

    def apply(self, settings: FrontEndSettings) -> None:
        self.front_end.apply(settings)
        if self.people is not None:
            self.people.apply(settings.person)
        self.settings = settings

    def process(self, image: np.ndarray, stamp: float) -> FrameResult:
        """One BGR frame stamped `stamp` seconds: its faces, with the person of each once recognised."""
        result = self.front_end.process(image)
        if self.people is None:
            return result
        start = time.perf_counter()
        named = self.people.update(stamp, image, result.faces)
        result.faces = [replace(face, person_id=named[face.id][0], person_confidence=named[face.id][1])
                        if face.id in named else face for face in result.faces]
        result.seconds['people'] = time.perf_counter() - start
        return result

    def close(self) -> None:
        self.front_end.close()
        if self.people is not None:
            self.people.close()
