"""Per-track online calibration: each person's identity and neutral face, learned while in view.

A single image cannot tell a wide mouth from a smile: fits and regressors leave a per-person
resting offset of about 40 % of a subtle expression, and subtracting a per-person neutral raised a
CK+ classifier from 0.86 to 0.92-0.93 (DESIGN 5). The paper removes the offset offline by fitting
whole videos; a robot sees each person for many frames, so each track learns it on line:

1. Identity (`TrackIdentity`): the recursive form of training/video_fit's shared identity. Each
   frame's 68 landmarks are fitted (camera + bounded expression, as `fit_image`) under the
   Gaussian identity belief that the track's earlier frames give, instead of the model's prior;
   then the frame's normal equations join that belief. Evidence is forgotten exponentially over
   `identity_horizon` frames (a tracker's id switch heals), so a track holds one (n_id, n_id)
   matrix whatever its length. As in the video fit, the identity prior grows with the evidence
   (0.01 cm^2 per frame): the identity would otherwise soak up every systematic landmark/model
   mismatch. The shipped landmark model carries the landmark-convention correction in its mean.
   With the identity known, the frame's landmark expression is identity-free; its size is the
   frame's **activity**: the RMS displacement of the 68 3D landmarks from the person's own neutral
   shape, in millimetres.
2. Neutral baseline (`NeutralBaseline`): the per-coefficient **median of the regressor's
   coefficients over the calmest frames**. A frame is a candidate when its activity is below
   `max_activity_mm` and the head is within `max_angle_deg` of frontal (the regressor is least
   reliable on turned faces); the last `window` candidates are kept and the median is taken over
   the calmer `calm_fraction` of them. Why: people rest most of the time between expressions, the
   absolute cap keeps a long smile from becoming the neutral, the relative cut adapts to how
   noisy one person's landmarks are, and the median ignores the blinks and speech that remain.
   Confidence grows with the evidence: 1 - exp(-n / frames_for_confidence) for n candidates.

Calibrated coefficients are coefficients - neutral, in [-1, 1]: negative where the face is more
relaxed than its usual rest. `Calibrator` holds one state per track id (core.tracking.TrackStates):
forgotten with the track, never shared between ids, cleared on reset.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fer3d_ros.core.expression.fitting import FitSettings, IdentityPrior, shape_system, solve_shape
from fer3d_ros.core.expression.morphable_model import LandmarkModel, load_landmark_model
from fer3d_ros.core.frontend.pose import ScaledOrthographicCamera, fit_camera
from fer3d_ros.core.settings import check as check_settings
from fer3d_ros.core.settings import setting
from fer3d_ros.core.track_states import TrackStates

INNER = np.arange(17, 68)  # brows, nose, eyes, mouth: the jaw contour slides along the silhouette


@dataclass(frozen=True)
class CalibrationSettings:
    # Per-frame landmark fit: 2 camera/shape alternations on a track's first frame, then
    # `warm_iterations` warm-started from the previous frame's expression (the camera is fitted to
    # it first: faces change little between frames); a strong expression prior, because the fit's
    # expression only scores activity: on CK+ it separates neutral frames from subtle apexes (sad,
    # fear, anger) with AUC 0.94 at 2.0 cm^2, 0.88 at 0.2.
    fit: FitSettings = FitSettings(iterations=2, expression_prior=2.0)
    warm_iterations: int = 1
    identity_prior_per_frame: float = 0.01  # cm^2 per frame of evidence (training/video_fit, measured on clips)
    identity_horizon: float = 300.0         # frames over which identity evidence is forgotten (1/e)
    calm_fraction: float = 0.5              # the calmest part of the candidates that the median is taken over
    # The identity changes over hundreds of frames: every frame's evidence is added (cheap), but the
    # belief (a 100x100 inverse) is recomputed on each of a track's first frames, then on every n-th.
    identity_refresh_every: int = 10
    # expression_node's calibration.* parameters:
    enabled: bool = setting(True, "Learn each tracked person's neutral face on line and publish "
                                     'calibrated (neutral-relative) coefficients beside the raw ones.')
    max_activity_mm: float = setting(
        1.2, "A frame is neutral evidence below this RMS landmark displacement from the person's neutral shape "
        '(mm); 1.2 passes 90 % of CK+ neutral frames.', minimum=0.1, maximum=20.0, dynamic=True)
    max_angle_deg: float = setting(25.0, 'Head pitch and yaw (degrees) beyond which a frame is not neutral '
                                            'evidence.', minimum=1.0, maximum=90.0, dynamic=True)
    window: int = setting(300, 'Neutral frames kept per track (bounded memory: 55 floats each).',
                                   minimum=1, maximum=100000)
    frames_for_confidence: float = setting(30.0, 'Neutral frames that bring the confidence to 0.63 '
                                                    '(1 - exp(-n / this)).', minimum=1.0, maximum=100000.0,
                                                    dynamic=True)
    forget_after: float = setting(2.0, 'Seconds after which a face that left the view loses its '
                                           'calibration.', minimum=0.01, maximum=3600.0, dynamic=True)
    min_neutral_probability: float = setting(
        0.3, "A frame is neutral evidence only where the raw emotion classifier gives neutral at least this "
        'probability: a held expression is not learned as the rest (0 = off; chosen on CK+, training.eval_people).',
        minimum=0.0, maximum=1.0, dynamic=True)
    min_neutral_seconds: float = setting(
        3.0, 'The neutral evidence must span at least this many seconds (first to last neutral frame) before the '
        'calibration is fully confident: one held expression is not a rest (0 = off).', minimum=0.0,
        maximum=600.0, dynamic=True)

    def check(self) -> None:
        check_settings(self)
        problems = [name for name, ok in (
            ('fit.iterations >= 1', self.fit.iterations >= 1), ('warm_iterations >= 1', self.warm_iterations >= 1),
            ('identity_prior_per_frame > 0', self.identity_prior_per_frame > 0),
            ('identity_horizon >= 1', self.identity_horizon >= 1),
            ('0 < calm_fraction <= 1', 0 < self.calm_fraction <= 1),
            ('identity_refresh_every >= 1', self.identity_refresh_every >= 1)) if not ok]
        if problems:
            raise ValueError(f'calibration settings out of range: need {", ".join(problems)}; got {self}')


class TrackIdentity:
    """One track's identity belief, refined by every frame's landmarks (bounded memory)."""

    def __init__(self, model: LandmarkModel, settings: CalibrationSettings) -> None:
        self.model, self.settings = model, settings
        self._active = model.observable_expressions()
        self._weights = settings.fit.landmark_weights()
        self._information = np.zeros((model.n_identity, model.n_identity))  # decayed sum of A^T A
        self._evidence = np.zeros(model.n_identity)                         # decayed sum of A^T (b - A_e e)
        self.frames = 0.0                                                   # decayed frame count
        self.prior = IdentityPrior.isotropic(model.n_identity, settings.fit.identity_prior)
        self._expression = np.zeros(model.n_expression)
        self._updates = 0
        self.camera: ScaledOrthographicCamera | None = None

    @property
    def identity(self) -> np.ndarray:
        return self.prior.mean

    def update(self, points: np.ndarray) -> np.ndarray:
        """Fit one frame's (68, 2) landmarks; return its expression weights given this identity."""
        expression = self._expression.copy()  # warm start: the previous frame
        for _ in range(self.settings.warm_iterations if self._updates else self.settings.fit.iterations):
            camera = fit_camera(points, self.model.landmarks(self.identity, expression), self._weights)
            a_id, a_e, b = shape_system(self.model, camera, points, self._weights, self._active)
            expression[self._active] = solve_shape(a_id, a_e, b, self.settings.fit, self.prior)[1]
        self.camera = camera  # this frame's camera for this person's shape: all 68 landmarks, not the template's
        keep = 1.0 - 1.0 / self.settings.identity_horizon
        self._information = keep * self._information + a_id.T @ a_id
        self._evidence = keep * self._evidence + a_id.T @ (b - a_e @ expression[self._active])
        self.frames = keep * self.frames + 1.0
        self._updates += 1
        every = self.settings.identity_refresh_every
        if self._updates <= every or self._updates % every == 0:
            weight = max(self.settings.fit.identity_prior, self.settings.identity_prior_per_frame * self.frames)
            covariance = np.linalg.inv(self._information + weight * np.eye(len(self._evidence)))
            self.prior = IdentityPrior(covariance @ self._evidence, covariance)
        self._expression = expression
        return expression

    def activity_mm(self, expression: np.ndarray) -> float:
        """RMS displacement of the 3D landmarks from this person's neutral shape, in mm."""
        displacement = self.model.expression[INNER] @ expression
        return float(10.0 * np.sqrt((displacement ** 2).sum(axis=1).mean()))


class NeutralBaseline:
    """Median of the regressor's coefficients over the calmest recent neutral candidates."""

    def __init__(self, size: int, settings: CalibrationSettings) -> None:
        self.settings = settings
        self._coefficients = np.zeros((settings.window, size), np.float32)  # a ring buffer
        self._activity = np.zeros(settings.window)
        self._times = np.zeros(settings.window)  # stamps of the candidates (their span)
        self.count = 0   # candidates held (at most window)
        self._next = 0
        self._neutral: np.ndarray | None = None

    def add(self, coefficients: np.ndarray, activity: float, time: float = 0.0) -> None:
        self._coefficients[self._next], self._activity[self._next] = coefficients, activity
        self._times[self._next] = time
        self._next = (self._next + 1) % self.settings.window
        self.count = min(self.count + 1, self.settings.window)
        self._neutral = None

    @property
    def neutral(self) -> np.ndarray | None:
        if self._neutral is None and self.count:
            calm = max(1, int(round(self.settings.calm_fraction * self.count)))
            chosen = np.argsort(self._activity[:self.count], kind='stable')[:calm]
            self._neutral = np.median(self._coefficients[chosen], axis=0)
        return self._neutral

    @property
    def confidence(self) -> float:
        """Grows with the neutral frames held, scaled down while they span less than min_neutral_seconds."""
        frames = 1.0 - np.exp(-self.count / self.settings.frames_for_confidence)
        if self.settings.min_neutral_seconds <= 0.0 or not self.count:
            return float(frames)
        span = float(np.ptp(self._times[:self.count]))
        return float(frames * min(1.0, span / self.settings.min_neutral_seconds))


@dataclass(frozen=True, eq=False)
class TrackCalibration:
    identity: TrackIdentity
    baseline: NeutralBaseline


@dataclass(frozen=True, eq=False)
class Calibrated:
    """One face's calibration in one frame."""
    coefficients: np.ndarray | None   # coefficients - neutral in [-1, 1]; None before any neutral frame
    confidence: float                 # [0, 1]
    activity_mm: float                # landmark displacement from the person's neutral
    neutral_candidate: bool           # this frame joined the neutral evidence


class Calibrator:
    """Calibration of every tracked face, fed one frame at a time."""

    def __init__(self, n_coefficients: int, settings: CalibrationSettings = CalibrationSettings(),
                 model: LandmarkModel | None = None, max_tracks: int | None = None) -> None:
        """`max_tracks`: most tracks calibrated at once (the least recently seen are dropped beyond it);
        each holds ~170 kB."""
        settings.check()
        self.n_coefficients, self.settings = n_coefficients, settings
        self.model = model or load_landmark_model()
        self.tracks = TrackStates(self._new_track, settings.forget_after, max_tracks)
        self._time = 0.0

    def _new_track(self) -> TrackCalibration:
        return TrackCalibration(TrackIdentity(self.model, self.settings),
                                NeutralBaseline(self.n_coefficients, self.settings))

    def __len__(self) -> int:
        return len(self.tracks)

    def configure(self, **changes) -> None:
        """Change settings at run time (`max_activity_mm=1.5`, ...); live tracks keep their evidence and
        use the new settings from their next frame. The window, the size of their buffers, cannot change."""
        settings = replace(self.settings, **changes)
        settings.check()
        if settings.window != self.settings.window:
            raise ValueError('the neutral window sizes every track\'s buffer: it is fixed once the calibrator exists')
        self.settings = settings
        for face_id in self.tracks:
            track = self.tracks.get(face_id)
            track.identity.settings = track.baseline.settings = settings
        self.tracks.forget_after = settings.forget_after

    def new_frame(self, time: float) -> bool:
        """Start a frame (stamp seconds); True if time went backwards and every track restarted."""
        went_back = self.tracks.new_frame(time)
        self._time = time
        return went_back

    def update(self, face_id: str, landmarks: np.ndarray, coefficients: np.ndarray,
               angles: np.ndarray | None = None, person_id: str = '',
               neutral_probability: float | None = None) -> Calibrated:
        """One face of the current frame: landmarks (68, 2) px (or flat), coefficients (n,), (roll, pitch, yaw)
        rad, and the raw classifier's probability that the face is neutral (None: not known, not gated).
        Raises ValueError saying what is wrong with the face's input (the caller names the face)."""
        landmarks, coefficients = np.asarray(landmarks, np.float64), np.asarray(coefficients, np.float32)
        if landmarks.size != 136:
            raise ValueError(f'expected 68 (x, y) landmarks, got {landmarks.size} values')
        landmarks = landmarks.reshape(68, 2)
        if not np.isfinite(landmarks).all():
            raise ValueError('non-finite landmarks (NaN or infinity): cannot fit a face to them')
        if np.ptp(landmarks, axis=0).min() < 2.0:
            raise ValueError('landmarks span less than 2 px (none were set?): cannot fit a face to them')
        if coefficients.shape != (self.n_coefficients,) or not np.isfinite(coefficients).all():
            raise ValueError(f'expected {self.n_coefficients} finite coefficients, got {coefficients.shape}')
        track = self.tracks.seen_face(face_id, person_id)
        activity = track.identity.activity_mm(track.identity.update(landmarks))
        frontal = angles is None or np.all(np.abs(np.asarray(angles)[1:]) <= np.radians(self.settings.max_angle_deg))
        looks_neutral = neutral_probability is None or neutral_probability >= self.settings.min_neutral_probability
        candidate = bool(frontal and looks_neutral and activity <= self.settings.max_activity_mm)
        if candidate:
            track.baseline.add(coefficients, activity, self._time)
        neutral = track.baseline.neutral
        return Calibrated(None if neutral is None else np.clip(coefficients - neutral, -1.0, 1.0),
                          track.baseline.confidence, activity, candidate)

    def person(self, face_id: str) -> tuple[np.ndarray, ScaledOrthographicCamera] | None:
        # (face_id: the track's id, or the person's once the track is recognised)
        """The track's identity estimate (n_id,) and this frame's camera fitted to all 68 landmarks with
        that person's shape (steadier than a head pose from the template's rigid landmarks); None for a
        track not calibrated in this frame."""
        track = self.tracks.get(face_id)
        if track is None or track.identity.camera is None:
            return None
        return track.identity.identity, track.identity.camera

    def reset(self) -> None:
        self.tracks.clear()
