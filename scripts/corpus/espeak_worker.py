"""Synthesize ONE utterance with the espeak-ng C library and report phoneme events.

Run as a separate process per utterance (libespeak-ng keeps global synthesis
state between calls):

    python espeak_worker.py '{"voice": "en-us+f3", "rate": 175, "pitch": 50,
                              "text": "...", "raw_out": "/tmp/x.raw"}'

Writes the int16 samples to raw_out and prints one JSON object on stdout:
sample_rate, num_samples, the WORD / PHONEME events in order, phoneme_types
(each phoneme's type code in espeak-ng's phoneme.h: 0 pause, 4 stop, 5 voiced
stop, 6 / 7 fricative / voiced fricative, ...), and pause_runs:
the [start, end) sample ranges that espeak-ng's wavegen wrote as a pause
(PlaySilence), from its output hooks (espeak_ng_SetOutputHooks: one call per
output sample, naming the kind of sound it came from; checked to cover every
sample).  A pause is not digital silence in voices with echo (en+f3...).

Why `sample` and not `audio_position`: in espeak_EVENT (speak_lib.h, API
revision 12) `audio_position` is the time in whole milliseconds (truncated),
while `sample` is the exact index into the generated sample stream.  In
AUDIO_OUTPUT_SYNCHRONOUS mode that stream is exactly what the synth callback
hands us, so sample / sample_rate is the exact phoneme start time.
"""
import ctypes
import json
import sys

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_PHONEME_EVENTS = 0x0001
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
ESPEAK_RATE = 1
ESPEAK_PITCH = 3
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_PHONEME = 7


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),  # phoneme name, NUL-terminated unless 8 bytes long
    ]


class EspeakEvent(ctypes.Structure):
    # Field order and types exactly as espeak_EVENT in speak_lib.h.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset in the input text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms, truncated
        ("sample", ctypes.c_int),  # exact sample index
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


SampleHook = ctypes.CFUNCTYPE(None, ctypes.c_short)
SymbolHook = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int)


class OutputHooks(ctypes.Structure):
    # espeak_ng_OUTPUT_HOOKS in espeak_ng.h.
    _fields_ = [("outputPhoSymbol", SymbolHook), ("outputSilence", SampleHook),
                ("outputVoiced", SampleHook), ("outputUnvoiced", SampleHook)]


SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(EspeakEvent)
)


def synthesize(voice: str, rate: int, pitch: int, text: str):
    lib = ctypes.CDLL("libespeak-ng.so.1")
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]

    chunks: list[np.ndarray] = []
    events: list[dict] = []

    def on_audio(wav, num_samples, event_ptr):
        if wav and num_samples > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while event_ptr[i].type != EVENT_LIST_TERMINATED:
            ev = event_ptr[i]
            if ev.type == EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8")
                events.append({"type": "phoneme", "sample": ev.sample, "name": name})
            elif ev.type == EVENT_WORD:
                events.append({"type": "word", "sample": ev.sample,
                                "text_position": ev.text_position, "length": ev.length})
            i += 1
        return 0

    # Run-length record of which samples wavegen wrote as a pause: [kind, first sample] per run.
    runs: list[list] = []
    counted = [0]
    phoneme_types: dict[str, int] = {}

    def symbol_hook(name, phoneme_type):
        phoneme_types.setdefault(name.decode("utf-8"), phoneme_type)

    def sample_hook(kind):
        def hook(_sample):
            if not runs or runs[-1][0] != kind:
                runs.append([kind, counted[0]])
            counted[0] += 1
        return SampleHook(hook)

    callback = SynthCallback(on_audio)  # kept referenced until synthesis ends
    hooks = OutputHooks(SymbolHook(symbol_hook), sample_hook("pause"), sample_hook("voiced"), sample_hook("unvoiced"))
    sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None,
                                        ESPEAK_INITIALIZE_PHONEME_EVENTS)
    if sample_rate <= 0:
        raise RuntimeError("espeak_Initialize failed")
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_ng_SetOutputHooks.argtypes = [ctypes.POINTER(OutputHooks)]
    lib.espeak_ng_SetOutputHooks(ctypes.byref(hooks))
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"espeak-ng has no voice {voice!r}")
    lib.espeak_SetParameter(ESPEAK_RATE, int(rate), 0)
    lib.espeak_SetParameter(ESPEAK_PITCH, int(pitch), 0)
    encoded = text.encode("utf-8") + b"\0"
    if lib.espeak_Synth(encoded, len(encoded), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8,
                        None, None) != 0:
        raise RuntimeError("espeak_Synth failed")
    lib.espeak_Synchronize()
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    if counted[0] != audio.size:
        raise RuntimeError(f"espeak-ng output hooks saw {counted[0]} samples, the audio has {audio.size}")
    ends = [start for _, start in runs[1:]] + [audio.size]
    pause_runs = [[start, end] for (kind, start), end in zip(runs, ends) if kind == "pause"]
    return sample_rate, audio.astype(np.int16), events, phoneme_types, pause_runs


def main() -> None:
    request = json.loads(sys.argv[1])
    sample_rate, audio, events, phoneme_types, pause_runs = synthesize(
        request["voice"], request["rate"], request["pitch"], request["text"])
    audio.tofile(request["raw_out"])
    json.dump({"sample_rate": sample_rate, "num_samples": int(audio.size), "events": events,
               "phoneme_types": phoneme_types, "pause_runs": pause_runs}, sys.stdout)


if __name__ == "__main__":
    main()
