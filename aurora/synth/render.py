"""Drawing a `Scene` into frames: a background seen through a moving camera, then the objects.

The background is painted once on a canvas twice the frame size; each frame crops a window of
it (moving for pans and tilts, shrinking or growing for zooms) and resizes it to the frame, so
the camera moves only the background. Every background carries sparse low-contrast speckles, so
camera motion shows in both axes even on a solid colour. Objects are then drawn in screen
coordinates with 4x supersampled edges.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from aurora.synth.config import SynthConfig
from aurora.synth.scene import Background, Scene, track
from aurora.synth.vocab import rgb

PAN = 0.3  # background travel over a pan or tilt, fraction of the frame
ZOOM = 1.5  # magnification reached by zoom_in (zoom_out starts there)
STRIPE_PERIOD = 0.2  # fractions of the frame: 12.8 px at 64
CHECKER_CELL = 1 / 6
DOT_PERIOD, DOT_RADIUS = 0.2, 0.055
SPECKLE_DENSITY, SPECKLE_MIX = 0.06, 0.3  # share of speckled cells; how far they blend to white/black
SUPERSAMPLE = 4


def render(scene: Scene, config: SynthConfig) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of `scene`, T = config.frames, H = W = config.size."""
    size, frames = config.size, config.frames
    canvas = Image.fromarray(background_canvas(scene.background, size))  # (2S, 2S, 3)
    tracks = [track(o, frames) for o in scene.objects]
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        box = camera_box(scene.camera, t / (frames - 1), size)
        frame = np.asarray(canvas.resize((size, size), Image.BILINEAR, box=box), dtype=np.float32)
        for obj, tr in zip(scene.objects, tracks):
            if not tr.visible[t]:
                continue
            alpha = coverage(obj.kind, tr.x[t] * size, tr.y[t] * size, tr.diameter[t] * size, tr.angle[t], size)
            frame += alpha[..., None] * (rgb(tr.colour[t]).astype(np.float32) - frame)  # (S, S, 3) blend
        out[t] = np.clip(np.rint(frame), 0, 255)
    return out


def camera_box(camera: str, progress: float, size: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the canvas window a frame shows, at `progress` in [0, 1].

    The canvas is 2 * size wide with the resting window in its middle. pan_left moves the window
    left over the canvas, so the background slides right on screen (tilt_up: window up, content
    down); zoom_in shrinks the window from size to size / ZOOM, magnifying the content.
    """
    centre_x = centre_y = float(size)
    shift = PAN * size * (progress - 0.5)  # -PAN/2 -> +PAN/2 of the frame
    if camera == "pan_left":
        centre_x -= shift
    elif camera == "pan_right":
        centre_x += shift
    elif camera == "tilt_up":
        centre_y -= shift
    elif camera == "tilt_down":
        centre_y += shift
    width = float(size)
    if camera == "zoom_in":
        width = size / ZOOM**progress  # geometric, so the zoom speed looks steady
    elif camera == "zoom_out":
        width = size / ZOOM ** (1 - progress)
    half = width / 2
    return (centre_x - half, centre_y - half, centre_x + half, centre_y + half)


def background_canvas(background: Background, size: int) -> np.ndarray:
    """(2S, 2S, 3) uint8 background of a frame of S pixels, speckles included."""
    n = 2 * size
    # Pixel centres relative to the canvas centre, in frame widths: (n,) each, broadcast to (n, n).
    coords = (np.arange(n) + 0.5 - size) / size
    u, v = coords[None, :], coords[:, None]  # u: x (columns), v: y (rows)
    theta = np.deg2rad(background.orientation)
    along = u * np.cos(theta) + v * np.sin(theta)  # (n, n) position along the orientation
    first = rgb(background.colours[0])
    second = rgb(background.colours[-1])
    if background.type == "solid":
        weight = np.zeros((n, n))
    elif background.type == "gradient":
        weight = np.clip(along / 1.2 + 0.5, 0, 1)  # spans a bit more than the resting window
    elif background.pattern == "stripes":
        weight = ((along / STRIPE_PERIOD) % 1 < 0.5).astype(np.float64)
    elif background.pattern == "checkerboard":
        weight = ((np.floor(u / CHECKER_CELL) + np.floor(v / CHECKER_CELL)) % 2).astype(np.float64)
    else:  # dots on a square grid
        du, dv = (u / DOT_PERIOD) % 1 - 0.5, (v / DOT_PERIOD) % 1 - 0.5
        weight = (np.hypot(du, dv) * DOT_PERIOD < DOT_RADIUS).astype(np.float64)
    image = first + weight[..., None] * (second - first)  # (n, n, 3)
    return np.clip(np.rint(_speckle(image, background.speckle_seed, size)), 0, 255).astype(np.uint8)


def _speckle(image: np.ndarray, seed: int, size: int) -> np.ndarray:
    """Blend sparse square speckles (2 px at 64) a little toward white on dark, black on light."""
    n = image.shape[0]
    block = max(1, size // 32)
    cells = -(-n // block)
    rng = np.random.default_rng(seed)
    chosen = rng.random((cells, cells)) < SPECKLE_DENSITY
    mask = np.kron(chosen, np.ones((block, block), dtype=bool))[:n, :n]  # (n, n)
    luma = image @ np.array([0.299, 0.587, 0.114])  # (n, n)
    target = np.where(luma[..., None] < 128, 255.0, 0.0)
    return np.where(mask[..., None], image + SPECKLE_MIX * (target - image), image)


def shape_points(kind: str, diameter: float, angle: float) -> np.ndarray:
    """(N, 2) polygon vertices (x, y) around the origin; y points down, angle turns clockwise."""
    if kind == "square":
        h = 0.4 * diameter
        points = np.array([(-h, -h), (h, -h), (h, h), (-h, h)])
    elif kind == "triangle":
        a = np.deg2rad(-90 + 120 * np.arange(3))
        points = 0.55 * diameter * np.stack([np.cos(a), np.sin(a)], 1)
    elif kind == "star":
        a = np.deg2rad(-90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 0.58, 0.25) * diameter
        points = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    elif kind == "cross":
        a, w = 0.5 * diameter, 0.17 * diameter
        points = np.array([(w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a),
                           (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w), (-w, -a)])
    else:
        raise ValueError(f"no polygon for {kind!r}")
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    return points @ np.array([[c, s], [-s, c]])  # rotate each (x, y) row


def coverage(kind: str, cx: float, cy: float, diameter: float, angle: float, size: int) -> np.ndarray:
    """(S, S) float32 share of each pixel the shape covers, centre (cx, cy) in pixels.

    Drawn SUPERSAMPLE times larger on a patch around the shape and box-filtered down.
    """
    alpha = np.zeros((size, size), dtype=np.float32)
    reach = 0.6 * diameter + 1
    left, top = max(0, int(cx - reach)), max(0, int(cy - reach))
    right, bottom = min(size, int(np.ceil(cx + reach))), min(size, int(np.ceil(cy + reach)))
    if right <= left or bottom <= top:
        return alpha
    f = SUPERSAMPLE
    patch = Image.new("L", ((right - left) * f, (bottom - top) * f), 0)
    draw = ImageDraw.Draw(patch)
    ox, oy = (cx - left) * f, (cy - top) * f  # centre inside the patch, supersampled pixels
    if kind == "circle":
        r = 0.5 * diameter * f
        draw.ellipse((ox - r, oy - r, ox + r, oy + r), fill=255)
    else:
        points = shape_points(kind, diameter * f, angle) + (ox, oy)
        draw.polygon([tuple(p) for p in points.tolist()], fill=255)
    small = patch.resize((right - left, bottom - top), Image.BOX)
    alpha[top:bottom, left:right] = np.asarray(small, dtype=np.float32) / 255.0
    return alpha
