"""Mouth and jaw blendshape curves from timed eSpeak phonemes, with coarticulation.

Each phoneme maps to one viseme (two or three for diphthongs, which split the phoneme's
interval), and each viseme is a fixed set of ARKit weights. Over time every viseme segment
contributes a smooth bump, its dominance: a raised-cosine onset that starts ``ONSET_LEAD_S``
before the segment and a mirrored release that ends ``ONSET_LEAD_S`` after it, so neighbours
overlap. The face at time t is the dominance-weighted mean of the segments' weights, so a
segment with a high dominance (bilabials) keeps its shape against its neighbours. Pauses are
segments whose weights are all 0, so the jaw closes in silence and at both ends of a clip.

The weights are hand-set to plausible values, not fitted to captured faces.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from workbench.arkit import ARKIT_INDEX, NUM_BLENDSHAPES
from workbench.synth.espeak import Phoneme

log = logging.getLogger(__name__)

# How far (seconds) a segment's onset starts before it and its release ends after it.
ONSET_LEAD_S = 0.05
# Maximum time (seconds) a segment ramps up or down inside its own interval.
INNER_RAMP_S = 0.03
# Dominance of "nothing said", so the weighted mean is defined everywhere and decays to 0.
REST_DOMINANCE = 1e-3


@dataclass(frozen=True)
class Viseme:
    """A mouth shape: ARKit weights in [0, 1] and how strongly it wins over its neighbours."""

    weights: dict[str, float]
    dominance: float = 1.0


def _both(name: str, value: float) -> dict[str, float]:
    return {f"{name}Left": value, f"{name}Right": value}


VISEMES: dict[str, Viseme] = {
    "sil": Viseme({}, dominance=1.5),
    # Bilabials need closed lips whatever the neighbours do, so they get a high dominance.
    "PP": Viseme({"jawOpen": 0.08, "mouthClose": 0.08, **_both("mouthPress", 0.35),
                  "mouthRollLower": 0.15, "mouthRollUpper": 0.1}, dominance=3.0),
    "FF": Viseme({"jawOpen": 0.1, "mouthRollLower": 0.5, **_both("mouthUpperUp", 0.2),
                  "mouthShrugLower": 0.1}, dominance=2.0),
    "TH": Viseme({"jawOpen": 0.18, "tongueOut": 0.3, **_both("mouthLowerDown", 0.1)}),
    "DD": Viseme({"jawOpen": 0.18, **_both("mouthStretch", 0.1)}, dominance=0.8),
    "kk": Viseme({"jawOpen": 0.22, **_both("mouthStretch", 0.08)}, dominance=0.6),
    "SS": Viseme({"jawOpen": 0.07, **_both("mouthStretch", 0.3), **_both("mouthSmile", 0.15)},
                 dominance=1.2),
    "CH": Viseme({"jawOpen": 0.12, "mouthFunnel": 0.45, "mouthPucker": 0.2,
                  **_both("mouthUpperUp", 0.2), **_both("mouthLowerDown", 0.15)}, dominance=1.5),
    "nn": Viseme({"jawOpen": 0.15, **_both("mouthStretch", 0.05)}, dominance=0.7),
    "RR": Viseme({"jawOpen": 0.14, "mouthPucker": 0.3, "mouthFunnel": 0.25}),
    # Weak consonants with no lip target of their own take their neighbours' shape.
    "weak": Viseme({"jawOpen": 0.15}, dominance=0.25),
    "aa": Viseme({"jawOpen": 0.6, **_both("mouthLowerDown", 0.3), **_both("mouthStretch", 0.1)}),
    "E": Viseme({"jawOpen": 0.38, **_both("mouthStretch", 0.25), **_both("mouthSmile", 0.1),
                 **_both("mouthLowerDown", 0.15)}),
    "schwa": Viseme({"jawOpen": 0.25, **_both("mouthLowerDown", 0.08)}, dominance=0.6),
    "er": Viseme({"jawOpen": 0.22, "mouthFunnel": 0.25, "mouthPucker": 0.15}),
    "ih": Viseme({"jawOpen": 0.14, **_both("mouthSmile", 0.35), **_both("mouthStretch", 0.3)}),
    "oh": Viseme({"jawOpen": 0.42, "mouthFunnel": 0.5, "mouthPucker": 0.2}),
    "ou": Viseme({"jawOpen": 0.12, "mouthPucker": 0.7, "mouthFunnel": 0.3}, dominance=1.3),
    # Japanese /u/ is compressed rather than rounded: less pucker than English "ou".
    "uu": Viseme({"jawOpen": 0.14, "mouthPucker": 0.35, "mouthFunnel": 0.1}),
    # Used for mnemonics missing from PHONEME_VISEMES: a half-open, neutral mouth.
    "neutral": Viseme({"jawOpen": 0.25}, dominance=0.5),
}

# eSpeak NG 1.52 phoneme mnemonics (stress marks removed) mapped to viseme names. The table covers
# every mnemonic that sentences.py produces with the en, en-us, en-gb-x-rp and ja voices, plus a
# few related ones of those voices.
PHONEME_VISEMES: dict[str, tuple[str, ...]] = {
    # pauses
    "_": ("sil",), "_:": ("sil",), "_!": ("sil",), "_|": ("sil",), "_^_": ("sil",),
    # consonants shared by English and Japanese
    "p": ("PP",), "b": ("PP",), "m": ("PP",),
    "f": ("FF",), "v": ("FF",),
    "T": ("TH",), "D": ("TH",),
    "t": ("DD",), "d": ("DD",), "r`": ("DD",), "*": ("DD",),
    "n": ("nn",), "l": ("nn",), "n-": ("nn",), "l-": ("nn",), "N\\": ("nn",),
    "k": ("kk",), "g": ("kk",), "N": ("kk",), "x": ("kk",),
    "h": ("weak",), "?": ("weak",), "C": ("weak",),
    "s": ("SS",), "z": ("SS",), "t_s": ("SS",), "d_z": ("SS",),
    "S": ("CH",), "Z": ("CH",), "tS": ("CH",), "dZ": ("CH",),
    "s\\": ("CH",), "z\\": ("CH",), "t_s\\": ("CH",), "d_z\\": ("CH",),
    "r": ("RR",), "r-": ("RR",), "R": ("RR",),
    "w": ("ou",), "W": ("ou",), "p\\": ("ou",),
    "j": ("ih",), "_j": ("ih",), ";": ("ih",),
    # English vowels
    "a": ("aa",), "aa": ("aa",), "A": ("aa",), "A:": ("aa",), "V": ("aa",), "0": ("aa",),
    "a#": ("schwa",), "@": ("schwa",), "@L": ("schwa", "nn"),
    "E": ("E",), "e": ("E",), "e:": ("E",),
    "3": ("er",), "3:": ("er",),
    "i": ("ih",), "i:": ("ih",), "I": ("ih",), "I#": ("ih",), "y": ("ih",),
    "o": ("oh",), "O": ("oh",), "O:": ("oh",), "o:": ("oh",),
    "u": ("ou",), "u:": ("ou",), "U": ("ou",),
    # English diphthongs: onset and offglide share the phoneme's interval
    "aI": ("aa", "ih"), "aU": ("aa", "ou"), "eI": ("E", "ih"), "oU": ("oh", "ou"),
    "OI": ("oh", "ih"), "e@": ("E", "schwa"), "i@": ("ih", "schwa"), "i@3": ("ih", "er"),
    "U@": ("ou", "schwa"), "A@": ("aa", "er"), "O@": ("oh", "er"), "o@": ("oh", "er"),
    "aI@": ("aa", "ih", "schwa"), "aU@": ("aa", "ou", "schwa"),
    # Japanese vowels (a, i, e, o are shared above)
    "u~": ("uu",), "M": ("uu",),
}

# Japanese /u/ differs from English /u/; generate.py passes language="ja" to pick this.
JAPANESE_OVERRIDES: dict[str, tuple[str, ...]] = {"u": ("uu",), "u:": ("uu",), "w": ("uu",)}

VOWEL_VISEMES = frozenset({"aa", "E", "schwa", "er", "ih", "oh", "ou", "uu"})

# Scale of a vowel's weights by stress (0 none, 1 secondary, 2 primary).
STRESS_SCALE = (0.85, 1.0, 1.12)

_VARIANT_SUFFIX = re.compile(r"[0-9#]+$")
_reported_unknown: set[str] = set()


def _weight_vector(weights: dict[str, float]) -> np.ndarray:
    vector = np.zeros(NUM_BLENDSHAPES, dtype=np.float64)
    for name, value in weights.items():
        vector[ARKIT_INDEX[name]] = value
    return vector


_VISEME_VECTORS = {name: _weight_vector(v.weights) for name, v in VISEMES.items()}


def visemes_for(mnemonic: str, language: str = "en") -> tuple[str, ...]:
    """Return the viseme names of an eSpeak mnemonic; unknown mnemonics give ``("neutral",)``.

    Numbered and ``#`` variants (``@2``, ``t#``, ``aI3``) fall back to their base mnemonic.
    """
    table_order = (JAPANESE_OVERRIDES, PHONEME_VISEMES) if language == "ja" else (PHONEME_VISEMES,)
    base = _VARIANT_SUFFIX.sub("", mnemonic)
    for candidate in (mnemonic, base):
        for table in table_order:
            if candidate in table:
                return table[candidate]
    if mnemonic not in _reported_unknown:
        _reported_unknown.add(mnemonic)
        log.debug("no viseme for eSpeak phoneme %r (%s); using a neutral half-open mouth",
                  mnemonic, language)
    return ("neutral",)


def is_silence(mnemonic: str) -> bool:
    """Tell whether an eSpeak mnemonic is a pause (``_``, ``_:``, ...) rather than a sound."""
    return visemes_for(mnemonic) == ("sil",)


@dataclass(frozen=True)
class VisemeSegment:
    """A span of time (seconds) during which one viseme is the articulation target."""

    viseme: str
    start: float
    end: float
    scale: float = 1.0


def viseme_segments(phonemes: list[Phoneme], language: str = "en") -> list[VisemeSegment]:
    """Expand timed phonemes into viseme segments, splitting diphthongs into equal parts."""
    segments: list[VisemeSegment] = []
    for phoneme in phonemes:
        names = visemes_for(phoneme.name, language)
        step = (phoneme.end - phoneme.start) / len(names)
        for part, name in enumerate(names):
            scale = STRESS_SCALE[phoneme.stress] if name in VOWEL_VISEMES else 1.0
            start = phoneme.start + part * step
            segments.append(VisemeSegment(name, start, start + step, scale))
    return segments


def _raised_cosine_step(x: np.ndarray) -> np.ndarray:
    """0 for x <= 0, 1 for x >= 1, and a half cosine in between (flat at both ends)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def segment_dominance(segments: list[VisemeSegment], times: np.ndarray) -> np.ndarray:
    """Return the dominance ``[len(times), len(segments)]`` of each segment at each time.

    A segment's bump rises over [start - ONSET_LEAD_S, start + inner] and falls over
    [end - inner, end + ONSET_LEAD_S], with inner = min(INNER_RAMP_S, duration / 2), so a
    short segment peaks at its centre and a long one stays at its maximum in between.
    """
    if not segments:
        return np.zeros((len(times), 0))
    starts = np.array([s.start for s in segments])
    ends = np.array([s.end for s in segments])
    inner = np.minimum(INNER_RAMP_S, (ends - starts) / 2.0)
    strength = np.array([VISEMES[s.viseme].dominance for s in segments])

    t = times[:, None]
    rise = _raised_cosine_step((t - (starts - ONSET_LEAD_S)) / (ONSET_LEAD_S + inner))
    fall = 1.0 - _raised_cosine_step((t - (ends - inner)) / (inner + ONSET_LEAD_S))
    return strength * rise * fall


def segment_weights(segments: list[VisemeSegment], times: np.ndarray) -> np.ndarray:
    """Return each segment's share ``[len(times), len(segments)]`` of the face at each time.

    Rows sum to slightly below 1; the rest belongs to the neutral face (all weights 0).
    """
    dominance = segment_dominance(segments, times)
    return dominance / (REST_DOMINANCE + dominance.sum(axis=1, keepdims=True))


def viseme_curves(
    phonemes: list[Phoneme],
    num_frames: int,
    fps: float,
    language: str = "en",
    articulation: float = 1.0,
) -> np.ndarray:
    """Return mouth and jaw blendshapes ``[num_frames, 52]`` in [0, 1] for frame times i / fps.

    ``articulation`` scales every weight (1.0 as in VISEMES; above 1 exaggerates); channels
    that no viseme uses stay 0.
    """
    segments = viseme_segments(phonemes, language)
    times = np.arange(num_frames, dtype=np.float64) / fps
    if not segments:
        return np.zeros((num_frames, NUM_BLENDSHAPES))
    shares = segment_weights(segments, times)
    targets = np.stack([_VISEME_VECTORS[s.viseme] * s.scale for s in segments])
    return np.clip(articulation * (shares @ targets), 0.0, 1.0)
