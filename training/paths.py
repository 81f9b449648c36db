"""Where the offline tools find things: this repository, and the data in ../shared/data."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / 'models'
OUT = REPO / 'out'        # reports and pictures (not in git)
DATA = REPO / 'data'      # built data sets (not in git)
SHARED = REPO.parent / 'shared' / 'data'
ICT_MODEL = SHARED / 'ict_face_model.npz'
