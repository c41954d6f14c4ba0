"""Camera corruptions at five severities: what `edgerec evaluate --robustness` applies to each photo.

Each corruption is a pure function ``(image, severity, rng) -> image`` on a uint8 BGR photo of any size,
severity 1 (mild) to 5 (severe); all randomness comes from ``rng``, so a seeded generator gives the same
pixels every run. They are applied to the full photo *before* `edge.core.preprocess.fit`, as a camera would
deliver it, so the network sees what the device's own crop and resize make of it.

Severities follow ImageNet-C (Hendrycks & Dietterich, ICLR 2019, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations") where it has a counterpart. ImageNet-C corrupts 224 px images
cut from photos resized to 256 px on the short side, so:

* spatial corruptions (blur, pixelation, fog, interlace, rolling shutter) scale their lengths by
  ``s = short side / 256``: a blur covers the same share of the scene as in ImageNet-C, whatever the
  photo's resolution;
* per-pixel corruptions (noise, low light, over-exposure, JPEG) keep ImageNet-C's values per pixel of the
  photo, as a sensor or encoder of that resolution would produce them; the device's downscale then
  averages some of the noise away, exactly as it does on a real camera's frames.

The registry `CORRUPTIONS` maps a name to its function; `corrupt(image, name, severity, seed)` draws the
generator from (seed, name, severity) so one condition never depends on which others ran.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import cv2
import numpy as np

from edge.errors import EdgerecError

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 256  # ImageNet-C's short side before its 224 px centre crop

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
"""(uint8 HxWx3 BGR image, severity 1-5, generator) -> a new uint8 HxWx3 BGR image of the same size."""


def _scale(image: np.ndarray) -> float:
    """Photo pixels per ImageNet-C pixel: lengths defined at 256 px on the short side are multiplied by it."""
    return min(image.shape[:2]) / REFERENCE_SIDE


def _to_uint8(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float in [0, 1] (any range; clipped) -> uint8; `out=x` reuses x's memory as scratch (fewer full-size
    arrays: a 1080p photo's are 25-50 MB each)."""
    y = np.clip(x, 0.0, 1.0, out=out)
    y *= 255.0
    y += 0.5
    return y.astype(np.uint8)


def _unit(image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32)
    x /= 255.0
    return x


def _to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear light (the exact sRGB curve)."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


_LINEAR_OF_UINT8 = _to_linear(np.arange(256, dtype=np.float32) / 255.0).astype(np.float32)
"""`_to_linear(_unit(image))` for each uint8 value: one table lookup per pixel instead of a power."""


def _linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear light [0, 1]; the same values as `_to_linear(_unit(image))`."""
    return cv2.LUT(image, _LINEAR_OF_UINT8)


def _to_srgb(x: np.ndarray) -> np.ndarray:
    """linear light [0, 1] -> sRGB-encoded (the camera's gamma)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


# --- noise: per pixel, ImageNet-C values ---------------------------------------------------------------

def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian sensor noise, sigma 0.08-0.38 of full scale (ImageNet-C gaussian_noise)."""
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= sigma
    noise += _unit(image)
    return _to_uint8(noise, out=noise)


def shot_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Photon (Poisson) noise: full scale = 60 .. 3 photons (ImageNet-C shot_noise)."""
    photons = (60, 25, 12, 5, 3)[severity - 1]
    counts = rng.poisson(_unit(image) * photons) / photons
    return _to_uint8(counts, out=counts)


# --- exposure: a sensor model in linear light ------------------------------------------------------------

FULL_WELL = 4000.0
"""Electrons a pixel collects at full scale under normal exposure (a small webcam/phone-class pixel)."""
READ_NOISE = 3.0
"""Read noise of that sensor, electrons rms."""


def low_light(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """1-5 stops less light: fewer photons (shot noise) plus read noise, the camera's gain recovering half
    the lost stops, then its gamma: the picture is darker by 0.5-2.5 stops and noisier.

    No ImageNet-C counterpart; the sensor model is the textbook one (shot noise + read noise, linear
    gain, sRGB encoding), with `FULL_WELL` and `READ_NOISE` of a small-pixel camera.
    """
    stops = float(severity)
    light = 2.0 ** -stops
    electrons = photons(_linear(image) * np.float32(light * FULL_WELL), rng)  # expected electrons, then counted
    read = rng.standard_normal(electrons.shape, dtype=np.float32)
    read *= READ_NOISE
    electrons += read
    electrons *= np.float32(2.0 ** (stops / 2) / FULL_WELL)  # the camera's gain
    srgb = _to_srgb(electrons)
    return _to_uint8(srgb, out=srgb)


NORMAL_FROM = 100.0
"""Mean photon count from which `photons` draws a normal of the same mean and variance instead of a Poisson:
there the two differ by at most about one count at the 1% and 99% quantiles (1% of the mean), and
the normal is several times cheaper to draw (a 1080p photo: docs/robustness.md)."""


def photons(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photon (shot-noise) counts of float32 means `expected`: Poisson, or its normal limit from `NORMAL_FROM`."""
    counts = rng.standard_normal(expected.shape, dtype=np.float32)
    counts *= np.sqrt(expected)
    counts += expected
    dim = expected < NORMAL_FROM
    counts[dim] = rng.poisson(expected[dim])
    return counts


def over_exposure(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """+0.5 .. +2.5 stops of exposure in linear light, highlights clipping at the sensor's full scale.

    ImageNet-C's counterpart is `brightness` (+0.1 .. +0.5 on HSV value); these stops move mid-grey by
    as much (0.50 -> 0.58 / 0.80 / 1.0 at severities 1 / 3 / 5) but do it as a sensor does: highlights
    saturate first and colours wash out towards white.
    """
    gain = 2.0 ** (0.5 * severity)
    return cv2.LUT(image, _to_uint8(_to_srgb(_LINEAR_OF_UINT8 * gain)))  # a table of the 256 values


# --- optics and motion: lengths scaled to the photo -------------------------------------------------------

def _disk(radius: float) -> np.ndarray:
    """An anti-aliased disk kernel of `radius` pixels (each tap weighted by the share of it inside)."""
    reach = math.ceil(radius)
    y, x = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0).astype(np.float32)
    return kernel / kernel.sum()


def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A lens out of focus: a disk (circle of confusion) of radius 3-10 ImageNet-C pixels, lightly
    smoothed (ImageNet-C defocus_blur's radius and alias blur)."""
    radius, alias = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    s = _scale(image)
    kernel = cv2.GaussianBlur(_disk(radius * s), (0, 0), alias * s)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT_101)


def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Camera or subject moving during the exposure: a smear along a random direction within 45 degrees of
    horizontal, one-sided Gaussian weights of length 2*radius+1 (ImageNet-C motion_blur's radius, sigma
    and angle range; ImageMagick's kernel shape)."""
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    s = _scale(image)
    angle = math.radians(rng.uniform(-45.0, 45.0))
    taps = max(2, round((2 * radius + 1) * s))
    reach = taps
    kernel = np.zeros((2 * reach + 1, 2 * reach + 1), np.float32)
    for k in range(taps):  # tap k lies k pixels behind along the motion, splatted bilinearly
        x, y = reach - k * math.cos(angle), reach - k * math.sin(angle)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        weight = math.exp(-(k / s) ** 2 / (2 * sigma ** 2))
        for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
            kernel[y0 + dy, x0 + dx] += weight * w
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


# --- the picture's path to the device: encoding and resolution ------------------------------------------

def jpeg(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG at quality 25 .. 7 (ImageNet-C jpeg_compression), encoded at the photo's own resolution as a
    camera or stream encoder would."""
    quality = (25, 18, 15, 10, 7)[severity - 1]
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EdgerecError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def pixelate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A low-resolution camera upscaled: box-downscaled to 0.6 .. 0.25 of ImageNet-C's 224 px resolution,
    then blown back up with square pixels (ImageNet-C pixelate)."""
    factor = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1] / _scale(image)
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


# --- the scene: haze ---------------------------------------------------------------------------------------

def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A size x size (a power of two) diamond-square height map in [0, 1]; each octave's random
    displacement is `decay` times weaker than the last (wrapping at the edges)."""
    if size < 2 or size & (size - 1):
        raise ValueError(f"plasma_fractal size must be a power of two >= 2, got {size}")
    grid = np.zeros((size, size))
    step, wibble = size, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half:size:step, half:size:step] = square / 4 + wibble * rng.uniform(-wibble, wibble, square.shape)
        centres = grid[half:size:step, half:size:step]
        corners = grid[0:size:step, 0:size:step]
        across = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0:size:step, half:size:step] = across / 4 + wibble * rng.uniform(-wibble, wibble, across.shape)
        down = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half:size:step, 0:size:step] = down / 4 + wibble * rng.uniform(-wibble, wibble, down.shape)
        step, wibble = half, wibble / decay
    grid -= grid.min()
    return grid / grid.max()


def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Haze or fog (or a dirty housing): a patchy veil of light added and the contrast lowered
    (ImageNet-C fog: its plasma fractal's strength and roughness), the veil's patches sized for 256 px."""
    strength, decay = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    h, w = image.shape[:2]
    s = _scale(image)
    rh, rw = max(1, round(h / s)), max(1, round(w / s))  # the photo's size at ImageNet-C's scale
    side = 1 << max(1, math.ceil(math.log2(max(rh, rw))))
    veil = cv2.resize(plasma_fractal(side, decay, rng)[:rh, :rw].astype(np.float32), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    x = _unit(image)
    peak = float(x.max())
    return _to_uint8((x + strength * veil[..., None]) * peak / (peak + strength))


# --- the sensor's read-out in time -------------------------------------------------------------------------

def _shift_rows(image: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each row moved sideways by its own (fractional) number of pixels, edges repeated."""
    h, w = image.shape[:2]
    map_x = (np.arange(w, dtype=np.float32)[None, :] - shifts.astype(np.float32)[:, None])
    map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def rolling_shutter(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A CMOS rolling shutter during a pan: rows are read out top to bottom, so each later row sees the
    scene moved further; verticals lean. The bottom row lies 4 .. 32 ImageNet-C pixels (1.8-14% of the
    width) from the top one, in a random direction. No ImageNet-C counterpart."""
    skew = (4, 8, 16, 24, 32)[severity - 1] * _scale(image) * rng.choice((-1.0, 1.0))
    h = image.shape[0]
    return _shift_rows(image, skew * (np.arange(h) / max(1, h - 1) - 0.5))


def interlace(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """An interlaced camera (analogue CCTV through a capture card) with motion and no deinterlacing: the
    odd lines are a field taken 1/50 s later, with the scene moved 1 .. 8 ImageNet-C pixels sideways
    (combing). No ImageNet-C counterpart."""
    moved = (1, 2, 4, 6, 8)[severity - 1] * _scale(image) * rng.choice((-1.0, 1.0))
    out = image.copy()
    out[1::2] = _shift_rows(image, np.full(image.shape[0], moved))[1::2]
    return out


CORRUPTIONS: Mapping[str, Corruption] = MappingProxyType({
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "low_light": low_light,
    "over_exposure": over_exposure,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "jpeg": jpeg,
    "pixelate": pixelate,
    "fog": fog,
    "rolling_shutter": rolling_shutter,
    "interlace": interlace,
})
"""Every corruption by name, in report order: sensor, exposure, optics/motion, encoding, scene, read-out."""


def check_names(names: list[str] | tuple[str, ...]) -> None:
    """Refuse an unknown corruption name with the list of known ones."""
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise EdgerecError(f"unknown corruption(s) {', '.join(map(repr, unknown))}; known: {', '.join(CORRUPTIONS)}")


def parse_names(text: str | None) -> tuple[str, ...]:
    """'jpeg, fog' -> ('jpeg', 'fog'), checked; None or blank -> every corruption."""
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    check_names(names)
    return names or tuple(CORRUPTIONS)


def generator(seed: int, name: str, severity: int, index: int = 0) -> np.random.Generator:
    """The generator for image `index` under one condition: a function of its own (seed, name, severity,
    index) alone, so adding a corruption or an image changes no other condition's pixels."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), severity, index])


def random_corruption(image: np.ndarray, rng: np.random.Generator, names: Sequence[str] | None = None) -> np.ndarray:
    """`image` under one corruption (of `names`; None = all) and severity drawn uniformly from `rng`: training's
    camera augmentation. A subset lets a benchmark hold corruptions out of training (scripts/bench/bench_augment.py)."""
    names = list(CORRUPTIONS) if names is None else list(names)
    name = names[int(rng.integers(len(names)))]
    return CORRUPTIONS[name](image, int(rng.integers(1, len(SEVERITIES) + 1)), rng)


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0, index: int = 0) -> np.ndarray:
    """`image` under corruption `name` at `severity` (1-5), deterministically for (seed, index)."""
    check_names([name])
    if severity not in SEVERITIES:
        raise EdgerecError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return CORRUPTIONS[name](image, severity, generator(seed, name, severity, index))
