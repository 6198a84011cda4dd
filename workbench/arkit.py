"""The 52 ARKit blendshape names in canonical order, and the face regions used by metrics.

The order is the one of Apple's ``ARFaceAnchor.BlendShapeLocation`` documentation page
(eyes, jaw, mouth, brows, cheeks, nose, tongue). Every tensor in the workbench whose last
axis has 52 entries follows this order; readers and writers translate from and to file
orders (Live Link Face, for one, swaps jawLeft/jawRight and mouthLeft/mouthRight).
"""

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
NUM_BLENDSHAPES = len(ARKIT_NAMES)
assert NUM_BLENDSHAPES == 52

ARKIT_INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT_NAMES)}


def _indices(predicate) -> tuple[int, ...]:
    return tuple(i for i, name in enumerate(ARKIT_NAMES) if predicate(name))


# Region -> channel indices. Every channel belongs to exactly one region.
REGIONS: dict[str, tuple[int, ...]] = {
    "jaw_mouth": _indices(lambda n: n.startswith(("jaw", "mouth"))),
    "eyes": _indices(lambda n: n.startswith("eye")),
    "brows": _indices(lambda n: n.startswith("brow")),
    "cheeks_nose": _indices(lambda n: n.startswith(("cheek", "nose"))),
    "tongue": _indices(lambda n: n.startswith("tongue")),
}
assert sorted(i for idx in REGIONS.values() for i in idx) == list(range(NUM_BLENDSHAPES))

# The shapes a lip-sync reviewer looks at first; used by time-series figures.
MAIN_MOUTH_SHAPES: tuple[str, ...] = (
    "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthSmileLeft",
)


def pascal_to_arkit(name: str) -> str:
    """Map a Live Link Face column name (``JawOpen``) to its ARKit name (``jawOpen``)."""
    return name[:1].lower() + name[1:]


def arkit_to_pascal(name: str) -> str:
    return name[:1].upper() + name[1:]
