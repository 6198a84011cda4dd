"""Offline speech synthesis with eSpeak NG through ctypes, with phoneme timing.

The shared library and its data folder come from the ``espeakng-loader`` wheel (version 0.2.4
ships libespeak-ng 1.52). The binding follows the C header ``speak_lib.h`` of that release (API
revision 12). It runs eSpeak in synchronous mode with a synth callback, which receives 16-bit
samples and a list of ``espeak_EVENT`` records. Phoneme events carry the eSpeak phoneme
mnemonic and the output sample where the phoneme starts.

eSpeak keeps its state in globals (the current voice, parameters and callback), so one
process has one engine: ``EspeakSynthesizer.shared()`` initializes it once and every call
runs under a lock.

NOTE: eSpeak's pitch flutter keeps its phase in a static variable that neither
``espeak_Initialize`` nor ``espeak_Terminate`` resets, so the same text spoken twice in one
process differs slightly in samples and phoneme timing. Output is repeatable only for the
same sequence of calls in a fresh process; ``workbench.synth.generate`` synthesizes each clip
in its own child process for that reason.

This module imports torch only when resampling, so child processes that only synthesize start
quickly.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from dataclasses import dataclass

import numpy as np

from workbench.errors import ConfigError

log = logging.getLogger(__name__)

# Values from speak_lib.h (eSpeak NG 1.52).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4

# Speaking rate limits of espeak_SetParameter(espeakRATE), in words per minute.
RATE_MIN_WPM = 80
RATE_MAX_WPM = 450


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),       # word and sentence events: word/sentence number
        ("name", ctypes.c_char_p),      # mark and play events
        ("string", ctypes.c_char * 8),  # phoneme events: mnemonic, NUL-terminated unless 8 bytes
    ]


class _Event(ctypes.Structure):
    # Layout of espeak_EVENT; 40 bytes on 64-bit Linux.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the message
        ("sample", ctypes.c_int),          # samples from the start of the message
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Phoneme:
    """One phoneme of an utterance, timed in seconds on the output audio.

    ``name`` is the eSpeak mnemonic without stress marks, such as ``aI``, ``t_s\\`` or ``_:``
    (a pause). ``stress`` is 2 for primary stress (``'``), 1 for secondary (``,``), else 0.
    """

    name: str
    start: float
    end: float
    stress: int = 0


@dataclass
class Utterance:
    """Synthesized speech: mono float32 samples in [-1, 1] and the phonemes that make it up."""

    text: str
    audio: np.ndarray
    sample_rate: int
    phonemes: list[Phoneme]
    word_starts: list[float]

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass(frozen=True)
class VoiceSettings:
    """Voice parameters of eSpeak: voice name, speaking rate (words/min), pitch and pitch range.

    ``voice`` is an eSpeak voice name with an optional variant, such as ``en-us``,
    ``en-gb-x-rp+f2`` or ``ja+m3``. ``pitch`` and ``pitch_range`` are eSpeak's 0-100 scales
    (50 is the voice default).
    """

    voice: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


def _load_library() -> tuple[ctypes.CDLL, str]:
    try:
        import espeakng_loader
    except ImportError as exc:
        raise ConfigError(
            "eSpeak NG is not available: the package 'espeakng-loader' is not installed; "
            "install it with 'pip install espeakng-loader'"
        ) from exc
    library = ctypes.CDLL(espeakng_loader.get_library_path())
    return library, espeakng_loader.get_data_path()


class EspeakSynthesizer:
    """The process-wide eSpeak NG engine. Get it with ``EspeakSynthesizer.shared()``."""

    _instance: EspeakSynthesizer | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lib, data_path = _load_library()
        self._declare_signatures()

        # buflength 0 selects eSpeak's default buffer of 60 ms per callback.
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise ConfigError(f"eSpeak NG failed to initialize with data folder {data_path}")
        self.native_rate = int(rate)

        self._samples: list[np.ndarray] = []
        self._events: list[tuple[int, int, bytes]] = []
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _SynthCallback(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)

        self._current_voice: str | None = None
        log.debug("eSpeak NG initialized at %d Hz from %s", self.native_rate, data_path)

    @classmethod
    def shared(cls) -> EspeakSynthesizer:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _declare_signatures(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p

    @property
    def version(self) -> str:
        """The eSpeak NG library version, such as ``1.52.0``."""
        return self._lib.espeak_Info(None).decode()

    def _collect(self, wav, num_samples, events) -> int:
        # Runs inside espeak_Synth on the calling thread; copy everything out of eSpeak's buffers.
        if wav and num_samples > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type in (_EVENT_PHONEME, _EVENT_WORD):
                self._events.append((event.type, event.sample, bytes(event.id.string)))
            index += 1
        return 0  # 0 = continue synthesis

    def _set_voice(self, settings: VoiceSettings) -> None:
        if not RATE_MIN_WPM <= settings.rate <= RATE_MAX_WPM:
            raise ConfigError(
                f"speaking rate {settings.rate} wpm is outside eSpeak's range "
                f"{RATE_MIN_WPM}-{RATE_MAX_WPM}"
            )
        for name, value in (("pitch", settings.pitch), ("pitch_range", settings.pitch_range)):
            if not 0 <= value <= 100:
                raise ConfigError(f"eSpeak {name} must be in 0-100, got {value}")
        if settings.voice != self._current_voice:
            status = self._lib.espeak_SetVoiceByName(settings.voice.encode())
            if status != _EE_OK:
                raise ConfigError(
                    f"eSpeak NG has no voice {settings.voice!r}; use a language code such as "
                    "'en-us' or 'ja', optionally with a variant ('en-us+f2')"
                )
            self._current_voice = settings.voice
        # Parameters persist across voices, so every message sets all three.
        self._lib.espeak_SetParameter(_PARAM_RATE, int(settings.rate), 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, int(settings.pitch), 0)
        self._lib.espeak_SetParameter(_PARAM_RANGE, int(settings.pitch_range), 0)

    def synthesize(
        self, text: str, settings: VoiceSettings, sample_rate: int | None = None,
        noise_seed: int = 0,
    ) -> Utterance:
        """Speak ``text`` (UTF-8, plain text) and return the audio at ``sample_rate`` Hz.

        ``sample_rate`` None keeps eSpeak's native rate (``native_rate``, 22050 Hz).
        ``noise_seed`` seeds the breath noise of voice variants that have one.
        """
        if not text.strip():
            raise ConfigError("cannot synthesize empty text")
        if sample_rate is not None and sample_rate <= 0:
            raise ConfigError(f"sample rate must be a positive number of Hz, got {sample_rate}")

        encoded = text.encode("utf-8") + b"\0"
        with self._lock:
            self._set_voice(settings)
            self._samples = []
            self._events = []
            # Breath noise (voice variants with a 'breath' line, such as f2) comes from
            # eSpeak's own random generator.
            self._lib.espeak_ng_SetRandSeed(noise_seed)
            status = self._lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            samples, events = self._samples, self._events
            self._samples, self._events = [], []
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} for text {text!r}")

        native = np.concatenate(samples) if samples else np.zeros(0, dtype=np.int16)
        phonemes, word_starts = self._timeline(events, len(native))
        utterance = Utterance(text=text, audio=native.astype(np.float32) / 32768.0,
                              sample_rate=self.native_rate, phonemes=phonemes,
                              word_starts=word_starts)
        if sample_rate is not None:
            utterance.audio = resample_audio(utterance.audio, self.native_rate, sample_rate)
            utterance.sample_rate = sample_rate
        return utterance

    def _timeline(
        self, events: list[tuple[int, int, bytes]], num_native: int
    ) -> tuple[list[Phoneme], list[float]]:
        """Turn phoneme start events into intervals in seconds: each ends where the next starts."""
        starts: list[tuple[str, int, int]] = []
        word_starts: list[float] = []
        for kind, sample, raw in events:
            if kind == _EVENT_WORD:
                word_starts.append(sample / self.native_rate)
                continue
            mnemonic = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
            # '(en)' and '(ja)' mark a switch of language inside the text, not a sound.
            if not mnemonic or mnemonic.startswith("("):
                continue
            stress = 0
            while mnemonic[:1] in ("'", ","):
                stress = max(stress, 2 if mnemonic[0] == "'" else 1)
                mnemonic = mnemonic[1:]
            starts.append((mnemonic, min(sample, num_native), stress))

        phonemes: list[Phoneme] = []
        if starts and starts[0][1] > 0:
            # eSpeak starts a message with a few ms of silence before the first phoneme event.
            phonemes.append(Phoneme("_", 0.0, starts[0][1] / self.native_rate))
        for index, (name, start, stress) in enumerate(starts):
            end = starts[index + 1][1] if index + 1 < len(starts) else num_native
            if end <= start:
                continue  # zero-length entries, such as the final '_' at the end of the audio
            phonemes.append(Phoneme(name, start / self.native_rate, end / self.native_rate, stress))
        return phonemes, word_starts


def resample_audio(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono float32 samples with torchaudio's windowed-sinc resampler."""
    if from_rate == to_rate or len(audio) == 0:
        return audio
    import torch

    with torch.no_grad():
        resampled = _resampler(from_rate, to_rate)(torch.from_numpy(audio))
    return resampled.numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=4)
def _resampler(from_rate: int, to_rate: int):
    # The transform builds its sinc kernel once; rebuilding it per call (as
    # torchaudio.functional.resample does) costs about 0.1 s for 22050 -> 16000 Hz.
    import torchaudio

    return torchaudio.transforms.Resample(from_rate, to_rate)
