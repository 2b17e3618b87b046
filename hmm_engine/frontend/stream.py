"""Streaming front end: microphone chunks at any rate -> 16 kHz -> feature frames, causally.

:class:`StreamingFeatures` turns audio chunks, as they arrive, into the same frames as
:func:`~hmm_engine.frontend.features.extract_features` computes on the whole recording, with
two documented differences forced by causality:

* a frame is given out once its analysis window and its delta context have arrived
  (``delta_window * deltas`` frames, 40 ms with the defaults, plus half a window);
* mean and variance normalisation (``cmvn``) uses the statistics of the frames seen so far
  (running CMVN, as online recognisers do) instead of the whole utterance's.

Resampling uses the same ``torchaudio.functional.resample`` as
:func:`~hmm_engine.frontend.audio.load_audio`, applied to overlapping stretches aligned on its
polyphase blocks so that every output sample equals the one-shot resampling of the whole
stream (the filter needs ``width`` input samples either side; samples whose right context has
not arrived yet are held back).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch
import torchaudio.functional as AF

from hmm_engine.errors import AudioError
from hmm_engine.frontend.audio import _array_to_float, _check_rate
from hmm_engine.frontend.features import LOG_FLOOR, FeatureConfig, _add_deltas, _power_spectrum

__all__ = ["StreamingResampler", "StreamingFeatures"]


class StreamingResampler:
    """Chunked resampling equal to resampling the whole stream at once (see the module doc).

    Memory: the source samples since the last output block's left context (a few dozen)."""

    def __init__(self, source_rate: int, target_rate: int = 16000):
        self.source_rate = _check_rate(source_rate, "stream")
        self.target_rate = _check_rate(target_rate, "target rate")
        g = math.gcd(self.source_rate, self.target_rate)
        self.orig, self.new = self.source_rate // g, self.target_rate // g
        # torchaudio's kernel reaches `width` source samples either side of each block of `orig`.
        base = min(self.orig, self.new) * 0.99
        width = math.ceil(6 * self.orig / base)
        self.context_blocks = math.ceil(width / self.orig) + 1
        self.reset()

    def reset(self) -> None:
        self.buffer = np.zeros(0, dtype=np.float32)  # source samples from block `self.block0` on
        self.block0 = 0  # first source block held in the buffer
        self.next_block = 0  # first block not yet given out

    def push(self, samples: np.ndarray, final: bool = False) -> np.ndarray:
        """Add source samples; return the target-rate samples that are now final."""
        if self.orig == self.new:
            return np.asarray(samples, dtype=np.float32)
        self.buffer = np.concatenate([self.buffer, np.asarray(samples, dtype=np.float32)])
        have = self.block0 * self.orig + len(self.buffer)  # source samples so far
        # Block b needs source samples up to (b + 1) * orig + width: hold back those without it.
        last = (have // self.orig) - self.context_blocks if not final else math.ceil(have / self.orig)
        if last <= self.next_block:
            return np.zeros(0, dtype=np.float32)
        start_block = max(self.block0, self.next_block - self.context_blocks)
        seg = self.buffer[(start_block - self.block0) * self.orig:]
        out = AF.resample(torch.from_numpy(np.ascontiguousarray(seg)), self.orig, self.new)
        lo = (self.next_block - start_block) * self.new
        hi = (last - start_block) * self.new
        if final:
            total = math.ceil(have * self.new / self.orig)
            hi = min(hi, total - start_block * self.new)
        res = out[lo:hi].numpy().astype(np.float32)
        self.next_block = last
        # Keep only what the next blocks' left context needs.
        keep_from = max(0, self.next_block - self.context_blocks)
        if keep_from > self.block0:
            self.buffer = self.buffer[(keep_from - self.block0) * self.orig:]
            self.block0 = keep_from
        return res


class StreamingFeatures:
    """Audio chunks -> feature frames ``[n, D]`` (running CMVN) and display spectra ``[n, F]`` dB.

    Args:
        config: the :class:`FeatureConfig` of the model that will decode the frames.
        source_rate: the microphone's rate (Gradio gives it with every chunk).
        sample_rate: the analysis rate (16 kHz, as the dashboard's models).
        max_seconds: the longest stream accepted (a bound on time and memory).
    """

    def __init__(self, config: FeatureConfig, source_rate: int, sample_rate: int = 16000, max_seconds: float = 600.0):
        self.config = config
        self.sample_rate = _check_rate(sample_rate, "analysis rate")
        hop_exact = config.frame_shift_ms * self.sample_rate / 1000.0
        self.hop = round(hop_exact)
        if self.hop < 1 or abs(self.hop - hop_exact) > 1e-6:
            raise AudioError(f"frame_shift_ms={config.frame_shift_ms} is not a whole number of samples")
        self.win = max(self.hop, round(config.frame_length_ms * self.sample_rate / 1000.0))
        self.left = (self.win - self.hop) // 2
        self.max_seconds = float(max_seconds)
        fmax = config.fmax if config.fmax is not None else self.sample_rate / 2
        n_fft = 1 << (self.win - 1).bit_length()
        self.fbank = AF.melscale_fbanks(n_freqs=n_fft // 2 + 1, f_min=config.fmin, f_max=fmax,
                                        n_mels=config.num_mels, sample_rate=self.sample_rate, norm=None,
                                        mel_scale="htk").double()
        self.dct = AF.create_dct(config.num_ceps, config.num_mels, norm="ortho").double() if config.kind == "mfcc" else None
        self.freqs = np.fft.rfftfreq(n_fft, d=1.0 / self.sample_rate)
        self.lookahead = config.deltas * config.delta_window  # frames of delta context
        self.resampler = StreamingResampler(source_rate, self.sample_rate)
        self.source_rate = self.resampler.source_rate
        self.reset()

    def reset(self) -> None:
        self.resampler.reset()
        self.samples = np.zeros(0, dtype=np.float32)  # 16 kHz samples from `self.sample0` on
        self.sample0 = 0
        self.base: list = []  # static features of the frames whose window is complete
        self.base0 = 0  # frame index of self.base[0]
        self.frames_out = 0  # frames given out
        self.source_samples = 0
        self.sum = None
        self.sumsq = None

    @property
    def seconds(self) -> float:
        return self.source_samples / self.source_rate

    def push(self, chunk, rate: Optional[int] = None, final: bool = False) -> Tuple[torch.Tensor, np.ndarray]:
        """Add a chunk (int16 / float array ``[N]`` or ``[N, C]``); return the new frames.

        Returns:
            features ``[n, D]`` float32 (normalised with the running statistics), spectra
            ``[n, F]`` float32 in dB, for the frames that became final.
        Raises:
            AudioError: a rate change within the stream, NaN samples, a stream over ``max_seconds``.
        """
        if rate is not None and _check_rate(rate, "stream") != self.source_rate:
            raise AudioError(f"the stream's sample rate changed from {self.source_rate} to {rate} Hz: restart it")
        data = _array_to_float(np.asarray(chunk), "stream chunk") if chunk is not None and np.size(chunk) else np.zeros((0, 1))
        if data.size and not np.all(np.isfinite(data)):
            raise AudioError("the stream chunk contains NaN or infinite samples")
        self.source_samples += data.shape[0]
        if self.seconds > self.max_seconds:
            raise AudioError(f"the stream is longer than {self.max_seconds:g} s: restart it")
        mono = data.mean(axis=1).astype(np.float32) if data.size else np.zeros(0, dtype=np.float32)
        new = self.resampler.push(mono, final=final)
        self.samples = np.concatenate([self.samples, new])
        spectra = self._new_base_frames(final)
        return self._emit(final), spectra

    # ------------------------------------------------------------------ internals
    def _new_base_frames(self, final: bool) -> np.ndarray:
        """Static features of every frame whose analysis window has arrived."""
        have = self.sample0 + len(self.samples)
        next_frame = self.base0 + len(self.base)
        # Frame i covers [i*hop - left, i*hop - left + win); at the start the signal is reflected.
        if final:
            last = math.ceil(have / self.hop)
        else:
            last = (have + self.left - self.win) // self.hop + 1
        if last <= next_frame or have <= self.left:
            return np.zeros((0, len(self.freqs)), dtype=np.float32)
        lo = next_frame * self.hop - self.left
        hi = (last - 1) * self.hop - self.left + self.win
        sig = torch.from_numpy(self.samples).double()
        pad_l = max(0, -lo)
        pad_r = max(0, hi - have)
        seg = sig[max(lo, self.sample0) - self.sample0: min(hi, have) - self.sample0]
        if pad_l or pad_r:
            mode = "reflect" if max(pad_l, pad_r) < len(sig) else "constant"
            seg = torch.nn.functional.pad(seg[None, None], (pad_l, pad_r), mode=mode)[0, 0]
        frames = seg.unfold(0, self.win, self.hop)
        power, _ = _power_spectrum(frames, self.win, self.config.preemphasis)
        base = torch.log(torch.clamp(power @ self.fbank, min=LOG_FLOOR))
        if self.dct is not None:
            base = base @ self.dct
        self.base.extend(base)
        # Keep the samples the next frame's window needs.
        keep = last * self.hop - self.left - self.sample0
        if keep > 0:
            self.samples = self.samples[keep:]
            self.sample0 += keep
        return (10.0 * torch.log10(torch.clamp(power, min=LOG_FLOOR))).float().numpy()

    def _emit(self, final: bool) -> torch.Tensor:
        avail = self.base0 + len(self.base)
        upto = avail if final else avail - self.lookahead  # frames [frames_out, upto) are final
        D = self.config.dim
        if upto <= self.frames_out:
            return torch.zeros(0, D)
        ctx = 2 * self.lookahead + 1
        w0 = max(self.base0, self.frames_out - ctx)
        block = torch.stack(self.base[w0 - self.base0:])
        values = _add_deltas(block, self.config.deltas, self.config.delta_window)
        values = values[self.frames_out - w0: upto - w0]
        self.frames_out = upto
        drop = max(0, self.frames_out - ctx - self.base0)
        if drop:
            self.base = self.base[drop:]
            self.base0 += drop
        if self.config.cmvn:
            s, q = values.sum(0), (values ** 2).sum(0)
            self.sum = s if self.sum is None else self.sum + s
            self.sumsq = q if self.sumsq is None else self.sumsq + q
            mean = self.sum / self.frames_out
            std = (self.sumsq / self.frames_out - mean ** 2).clamp_min(0).sqrt()
            values = (values - mean) / std.clamp_min(1e-8)
        return values.float()
