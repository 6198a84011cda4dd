"""FACEGOOD rig weights (``.npy`` float ``[frames, 116]`` at 30 fps) mapped to ARKit.

The FACEGOOD-Audio2Face training data stores per-frame weights of their 116-blendshape
"shirley" rig. Only jaw and mouth shapes are animated, so the mask contains only the 27 ARKit
shapes with a mouth or jaw source. All other channels are absent, not zero.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from workbench.arkit import ARKIT_INDEX, NUM_BLENDSHAPES
from workbench.errors import DataError
from workbench.formats.common import clip_unit_range
from workbench.targets import TargetTrack

log = logging.getLogger(__name__)

FACEGOOD_FPS = 30.0

# Column order of the bs_value_*.npy training files: the rig's channel names as stored in
# code/train/shirley_1015_bs_name.npy of github.com/FACEGOOD/FACEGOOD-Audio2Face (MIT
# licence, The FACEGOOD Authors). The repository's bsname.txt and shirley_1119_bs_name.npy
# list the same names in another order, which would put the moving columns on eye and brow
# names. With this order, the 34 columns that move in the six published takes are all mouth,
# jaw, nose, tongue or teeth channels.
FACEGOOD_NAMES: tuple[str, ...] = (
    "brow_lower_l", "tongue_Scale_X", "tongue_Scale__X", "tongue_Scale_Y", "tongue_Scale__Y",
    "tongue_Scale_Z", "tongue_Scale__Z", "nose_out_l", "nose_out_r", "tongue_u", "tongue_u_u",
    "cheek_suck_r", "brow_raise_d", "mouth_stretch_u", "tongue_u_d", "tooth_d_d", "tongue_d",
    "tooth_r", "tooth_d_u", "cheek_UP", "eye_blink1_l", "eye_blink1_r", "eye_blink2_l",
    "eye_blink2_r", "eye_lidTight_l", "eye_lidTight_r", "eye_shutTight_l", "eye_shutTight_r",
    "brow_lower_r", "eye_upperLidRaise_l", "eye_upperLidRaise_r", "eye_downLidRaise_l",
    "eye_downLidRaise_r", "jaw_sideways_l", "jaw_sideways_r", "jaw_thrust_c", "mouth_chew_c",
    "mouth_chinRaise_d", "mouth_chinRaise_u", "brow_raise_c", "mouth_dimple_l",
    "mouth_dimple_r", "mouth_funnel_dl", "mouth_funnel_dr", "mouth_funnel_ul",
    "mouth_funnel_ur", "mouth_lipCornerDepressFix_l", "mouth_lipCornerDepressFix_r",
    "mouth_lipCornerDepress_l", "mouth_lipCornerDepress_r", "brow_raise_l",
    "mouth_lipCornerPullOpen_l", "mouth_lipCornerPullOpen_r", "mouth_lipCornerPull_l",
    "mouth_lipCornerPull_r", "mouth_lipStretchOpen_l", "mouth_lipStretchOpen_r",
    "mouth_lipStretch_l", "mouth_lipStretch_r", "mouth_lowerLipDepress_l",
    "mouth_lowerLipDepress_r", "brow_raise_r", "mouth_lowerLipProtrude_c", "mouth_oh_c",
    "mouth_oo_c", "mouth_pressFix_c", "mouth_press_l", "mouth_press_r", "mouth_pucker_l",
    "mouth_pucker_r", "mouth_screamFix_c", "mouth_sideways_l", "cheek_puff_l",
    "mouth_sideways_r", "mouth_stretch_c", "mouth_suck_dl", "mouth_suck_dr", "mouth_suck_ul",
    "mouth_suck_ur", "mouth_upperLipRaise_l", "mouth_upperLipRaise_r", "nose_wrinkle_l",
    "nose_wrinkle_r", "cheek_puff_r", "tooth_l", "eye_lookDown1_l", "eye_lookDown2_l",
    "eye_lookLeft_l", "eye_lookRight_l", "eye_lookUp_l", "eye_lookDown1_r", "eye_lookDown2_r",
    "eye_lookLeft_r", "cheek_raise_l", "eye_lookRight_r", "eye_lookUp_r", "tongue_Rot_1X",
    "tongue_Rot__1X", "tongue_Rot_2X", "tongue_Rot__2X", "tongue_Rot_3X", "tongue_Rot__3X",
    "tongue_Rot_1Y", "tongue_Rot__1Y", "cheek_raise_r", "tongue_Rot_2Y", "tongue_Rot__2Y",
    "tongue_Rot_3Y", "tongue_Rot__3Y", "tongue_Rot_1Z", "tongue_Rot__1Z", "tongue_Rot_2Z",
    "tongue_Rot__2Z", "tongue_Rot_3Z", "tongue_Rot__3Z", "cheek_suck_l",
)
assert len(FACEGOOD_NAMES) == 116

# ARKit shape -> FACEGOOD channels whose max() gives it. These are the 27 rows marked "valid"
# in doc/Voice2Face_blendshape2ARkit.xlsx (Sheet1) of the same repository. The sheet marks
# its eye, brow, cheek and nose rows "Invalid" because the data animates only the mouth, and
# gives tongueOut no source, so those ARKit shapes are masked.
ARKIT_FROM_FACEGOOD: dict[str, tuple[str, ...]] = {
    "jawForward": ("jaw_thrust_c",),
    "jawLeft": ("jaw_sideways_l",),
    "jawRight": ("jaw_sideways_r",),
    "jawOpen": ("mouth_stretch_c",),
    "mouthClose": ("mouth_chew_c",),
    "mouthFunnel": ("mouth_funnel_dl", "mouth_funnel_dr", "mouth_funnel_ul", "mouth_funnel_ur"),
    "mouthPucker": ("mouth_pucker_l", "mouth_pucker_r"),
    "mouthLeft": ("mouth_sideways_l",),
    "mouthRight": ("mouth_sideways_r",),
    "mouthSmileLeft": ("mouth_lipCornerPull_l",),
    "mouthSmileRight": ("mouth_lipCornerPull_r",),
    "mouthFrownLeft": ("mouth_lipCornerDepress_l", "mouth_lipCornerDepressFix_l"),
    "mouthFrownRight": ("mouth_lipCornerDepress_r", "mouth_lipCornerDepressFix_r"),
    "mouthDimpleLeft": ("mouth_dimple_l",),
    "mouthDimpleRight": ("mouth_dimple_r",),
    "mouthStretchLeft": ("mouth_lipStretch_l",),
    "mouthStretchRight": ("mouth_lipStretch_r",),
    "mouthRollLower": ("mouth_suck_dl", "mouth_suck_dr"),
    "mouthRollUpper": ("mouth_suck_ul", "mouth_suck_ur"),
    "mouthShrugLower": ("mouth_chinRaise_d",),
    "mouthShrugUpper": ("mouth_chinRaise_u",),
    "mouthPressLeft": ("mouth_press_l",),
    "mouthPressRight": ("mouth_press_r",),
    "mouthLowerDownLeft": ("mouth_lowerLipDepress_l",),
    "mouthLowerDownRight": ("mouth_lowerLipDepress_r",),
    "mouthUpperUpLeft": ("mouth_upperLipRaise_l",),
    "mouthUpperUpRight": ("mouth_upperLipRaise_r",),
}
assert all(s in FACEGOOD_NAMES for sources in ARKIT_FROM_FACEGOOD.values() for s in sources)

_SOURCE_COLUMNS = {
    arkit: [FACEGOOD_NAMES.index(s) for s in sources]
    for arkit, sources in ARKIT_FROM_FACEGOOD.items()
}


def read_facegood_npy(path: str | Path, fps: float | None = None) -> TargetTrack:
    """Read FACEGOOD rig weights and map them to ARKit; ``fps`` defaults to 30."""
    path = Path(path)
    weights = _load_weights(path)

    bad_rows = np.flatnonzero(~np.isfinite(weights).all(axis=1))
    if len(bad_rows):
        raise DataError(
            f"{path}: NaN or infinite weight at row {bad_rows[0]} "
            f"({len(bad_rows)} bad rows in all); the file is corrupt or was exported wrongly"
        )
    weights = clip_unit_range(path, weights, names=list(FACEGOOD_NAMES))

    values = np.zeros((len(weights), NUM_BLENDSHAPES), dtype=np.float32)
    mask = np.zeros(NUM_BLENDSHAPES, dtype=bool)
    for arkit, columns in _SOURCE_COLUMNS.items():
        values[:, ARKIT_INDEX[arkit]] = weights[:, columns].max(axis=1)
        mask[ARKIT_INDEX[arkit]] = True
    return TargetTrack(values=values, mask=mask, fps=FACEGOOD_FPS if fps is None else fps, path=path)


def _load_weights(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # The published files were written by Python 2's numpy; loading them is safe and
            # exact, numpy only suggests re-saving them.
            warnings.filterwarnings("ignore", message=".*created on Python 2", category=UserWarning)
            # allow_pickle=False: a dataset file must never run code when it is opened.
            weights = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DataError(
            f"{path}: not a plain numeric .npy array ({error}); FACEGOOD labels are "
            "float arrays [frames, 116]"
        ) from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read .npy file ({error})") from None

    if weights.ndim != 2 or weights.shape[1] != len(FACEGOOD_NAMES):
        raise DataError(
            f"{path}: FACEGOOD weights must have shape [frames, {len(FACEGOOD_NAMES)}], "
            f"found {weights.shape}; is this file from another rig?"
        )
    if not np.issubdtype(weights.dtype, np.number):
        raise DataError(f"{path}: FACEGOOD weights must be numbers, found dtype {weights.dtype}")
    return weights.astype(np.float64)
