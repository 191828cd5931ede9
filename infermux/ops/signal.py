"""Signal processing: DFT, STFT, the Hann/Hamming/Blackman windows and MelWeightMatrix.

Complex tensors are ONNX-style real tensors whose last axis holds (real, imaginary), or just
(real,) for a real signal.  Transforms run through ``xp.fft`` (in float32 for 16-bit input) and
are cast back to the input type.
"""

from __future__ import annotations

import math

import numpy as np

from infermux.errors import ShapeMismatchError
from infermux.ops._dtypes import onnx_to_numpy
from infermux.ops.registry import kernel

__all__: list[str] = []


def _scalar(x) -> int:
    """A 0-d or 1-element integer tensor as a Python int (works for NumPy and CuPy)."""
    (value,) = x.reshape(-1).tolist()
    return int(value)


def _as_complex(x):
    """(..., 1) real or (..., 2) real/imaginary tensor -> (...) real or complex array."""
    if x.shape[-1] == 1:
        signal = x[..., 0]
    elif x.shape[-1] == 2:
        signal = x[..., 0] + 1j * x[..., 1]
    else:
        raise ShapeMismatchError(f"the last axis of a signal must be 1 (real) or 2 (complex), "
                                 f"got shape {x.shape}")
    if signal.dtype.itemsize <= 2 or signal.dtype.name == "bfloat16":  # fft has no half type
        signal = signal.astype(np.float32)
    return signal


def _stack_complex(xp, z, dtype):
    return xp.stack([z.real, z.imag], axis=-1).astype(dtype, copy=False)


def _dft(xp, x, dft_length, axis: int, inverse: int, onesided: int):
    if not -x.ndim <= axis < x.ndim or axis % x.ndim == x.ndim - 1:
        raise ValueError(f"DFT axis {axis} is not a signal axis of a tensor of rank {x.ndim}")
    axis %= x.ndim
    signal = _as_complex(x)
    if dft_length is not None:
        n = _scalar(dft_length)
    elif inverse and onesided:
        n = 2 * (x.shape[axis] - 1)
    else:
        n = x.shape[axis]
    if inverse and onesided:  # one-sided spectrum -> real signal
        return xp.fft.irfft(signal, n=n, axis=axis)[..., None].astype(x.dtype)
    if inverse:
        return _stack_complex(xp, xp.fft.ifft(signal, n=n, axis=axis), x.dtype)
    if onesided and x.shape[-1] == 1:
        return _stack_complex(xp, xp.fft.rfft(signal, n=n, axis=axis), x.dtype)
    spectrum = xp.fft.fft(signal, n=n, axis=axis)
    if onesided:
        spectrum = xp.take(spectrum, xp.arange(n // 2 + 1), axis=axis)
    return _stack_complex(xp, spectrum, x.dtype)


@kernel("DFT", since=17)
def dft_17(xp, x, dft_length=None, /, *, axis=1, inverse=0, onesided=0):
    """DFT along the ``axis`` attribute."""
    return _dft(xp, x, dft_length, axis, inverse, onesided)


@kernel("DFT", since=20)
def dft_20(xp, x, dft_length=None, axis=None, /, *, inverse=0, onesided=0):
    """DFT along the optional scalar input ``axis`` (default -2, the last signal axis)."""
    return _dft(xp, x, dft_length, -2 if axis is None else _scalar(axis), inverse, onesided)


@kernel("STFT", since=17)
def stft(xp, signal, frame_step, window=None, frame_length=None, /, *, onesided=1):
    """Short-time Fourier transform of (batch, length, 1|2) -> (batch, frames, bins, 2)."""
    step = _scalar(frame_step)
    if frame_length is not None:
        length = _scalar(frame_length)
    elif window is not None:
        length = window.shape[0]
    else:
        raise ValueError("STFT needs a window or a frame_length")
    if window is not None and window.shape[0] != length:
        raise ShapeMismatchError(f"STFT window of length {window.shape[0]} does not match "
                                 f"frame_length {length}")
    n_frames = 1 + (signal.shape[1] - length) // step
    if n_frames < 1 or step < 1:
        raise ValueError(f"STFT: a signal of length {signal.shape[1]} holds no frame of length "
                         f"{length} with step {step}")
    starts = xp.arange(n_frames).reshape(-1, 1) * step
    frames = _as_complex(signal)[:, starts + xp.arange(length)]  # (batch, frames, length)
    if window is not None:
        frames = frames * window.astype(frames.real.dtype, copy=False)
    if onesided and signal.shape[-1] == 1:
        spectrum = xp.fft.rfft(frames, n=length, axis=-1)
    else:
        spectrum = xp.fft.fft(frames, n=length, axis=-1)
        if onesided:
            spectrum = spectrum[..., : length // 2 + 1]
    return _stack_complex(xp, spectrum, signal.dtype)


# ---------------------------------------------------------------- windows
def _window(xp, size, periodic: int, output_datatype: int, coefficients: tuple[float, ...]):
    """sum_k (-1)^k a_k cos(2 pi k n / N), N = size (periodic) or size - 1 (symmetric)."""
    n_points = _scalar(size)
    denominator = n_points if periodic else n_points - 1
    n = xp.arange(n_points, dtype=np.float64)
    out = xp.zeros(n_points, dtype=np.float64)
    for k, a in enumerate(coefficients):
        if k == 0:
            out += a
        elif denominator > 0:
            out += (-1) ** k * a * xp.cos((2 * math.pi * k / denominator) * n)
    if denominator <= 0:  # a symmetric window of one point
        out[:] = 1
    return out.astype(onnx_to_numpy(output_datatype))


@kernel("HannWindow", since=17)
def hann_window(xp, size, /, *, output_datatype=1, periodic=1):
    """0.5 - 0.5 cos(2 pi n / N)."""
    return _window(xp, size, periodic, output_datatype, (0.5, 0.5))


@kernel("HammingWindow", since=17)
def hamming_window(xp, size, /, *, output_datatype=1, periodic=1):
    """25/46 - 21/46 cos(2 pi n / N)."""
    return _window(xp, size, periodic, output_datatype, (25 / 46, 21 / 46))


@kernel("BlackmanWindow", since=17)
def blackman_window(xp, size, /, *, output_datatype=1, periodic=1):
    """0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)."""
    return _window(xp, size, periodic, output_datatype, (0.42, 0.5, 0.08))


# ---------------------------------------------------------------- MelWeightMatrix
def _mel_edges(xp, num_mel_bins: int, dft_length, sample_rate, lower_hz, upper_hz):
    """The num_mel_bins + 2 triangle edges as spectrogram bin indices.

    Follows the ONNX reference step by step (the mel range is split into num_mel_bins + 2
    steps, the edge frequencies are floored to bins) so the integer edges agree exactly.
    """
    log10 = math.log(10)
    low_mel = (2595 * xp.log1p(lower_hz / 700)).astype(np.float64) / log10
    high_mel = (2595 * xp.log1p(upper_hz / 700)).astype(np.float64) / log10
    step = (high_mel - low_mel) / (num_mel_bins + 2)
    mels = xp.arange(num_mel_bins + 2, dtype=np.float64) * step + low_mel
    hertz = 700 * xp.expm1(mels / 2595 * log10)
    return (((dft_length + 1) * hertz) // sample_rate).astype(np.int64)


@kernel("MelWeightMatrix", since=17)
def mel_weight_matrix(xp, num_mel_bins, dft_length, sample_rate, lower_edge_hertz,
                      upper_edge_hertz, /, *, output_datatype=1):
    """(dft_length // 2 + 1, num_mel_bins) triangular filters, evenly spaced on the mel scale."""
    mel_bins, length = _scalar(num_mel_bins), _scalar(dft_length)
    edges = _mel_edges(xp, mel_bins, length, _scalar(sample_rate), lower_edge_hertz,
                       upper_edge_hertz)
    low, centre, high = edges[:-2], edges[1:-1], edges[2:]
    j = xp.arange(length // 2 + 1, dtype=np.int64).reshape(-1, 1)
    rising = (j >= low) & (j <= centre)
    rise = (j - low) / xp.maximum(centre - low, 1)
    rise = xp.where(centre == low, 1.0, rise)  # a zero-width rising edge is a single 1 at centre
    falling = (j >= centre) & (j < high)
    fall = (high - j) / xp.maximum(high - centre, 1)
    out = xp.where(falling, fall, xp.where(rising, rise, 0.0))
    return out.astype(onnx_to_numpy(output_datatype))
