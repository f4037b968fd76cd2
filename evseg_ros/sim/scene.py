"""Procedural driving world and a per-pixel ray caster for the simulated rig.

The world is an infinite straight street generated from hashed segment and slot indices, so any
time can be rendered directly (no state, no loop) and every quantity is a pure function of the
seed and the time. Each camera is rendered by intersecting its own pixel rays (from its
``CameraModel``) with analytic geometry from one shared centre of projection; this is what makes
the calibration homography ``K_frame @ inv(K_event)`` exact ground truth for the simulated rig.

Coordinates: world X to the right of the driving direction, Y up, Z forward along the road
(metres). Cameras follow OpenCV (x right, y down, z forward). To keep float32 arithmetic precise
for arbitrarily long runs, per-pixel maths uses a local frame whose Z origin is the ego position
rounded down to a multiple of ``ANCHOR_M``; every texture period divides ``ANCHOR_M``, so
surfaces stay world-anchored across anchor changes.

Speed: everything is vectorised numpy on float32. Stuff (road, kerbs, sidewalks, facades, lawns,
skyline, sky) is cast for all pixels with whole-image arithmetic, merged with
``copyto(where=...)`` into one depth image and a one-byte surface code, whose attributes (class,
material, texture, orientation) come from 256-entry look-up tables. Objects (poles, signs,
vehicles, persons) become primitives (boxes, cylinders, plates, billboards); each kind is cast
in one batch over the pixels of all its projected bounding boxes and merged by depth with
``np.minimum.at``, so the cost does not grow with per-object Python overhead. Textures are
sampled in one ``cv2.remap`` call from a tiled, pre-blurred atlas with a per-pixel level picked
from the pixel footprint (a poor man's mip-map), which keeps distant texture from aliasing into
event noise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from evseg_ros.geometry.calibration import CameraModel
from evseg_ros.labels import DSEC_11

# --- class ids (DSEC_11) ------------------------------------------------------------------------
BACKGROUND = DSEC_11.index("background")
BUILDING = DSEC_11.index("building")
FENCE = DSEC_11.index("fence")
PERSON = DSEC_11.index("person")
POLE = DSEC_11.index("pole")
ROAD = DSEC_11.index("road")
SIDEWALK = DSEC_11.index("sidewalk")
VEGETATION = DSEC_11.index("vegetation")
VEHICLE = DSEC_11.index("vehicle")
WALL = DSEC_11.index("wall")
TRAFFIC_SIGN = DSEC_11.index("traffic_sign")

# --- street layout (metres) ---------------------------------------------------------------------
LANE_WIDTH = 3.5
ROAD_HALF_WIDTH = 7.0  # two lanes each way
KERB_HEIGHT = 0.15
FACADE_X = 10.0  # sidewalk outer edge = first facade row
BACK_X = 30.0  # second, taller row (skyline) behind lawns
CAMERA_HEIGHT = 1.4
EGO_LANE_X = 0.5 * LANE_WIDTH
SEGMENT_M = 16.0  # facade segment length
BACK_SEGMENT_M = 32.0
ANCHOR_M = 64.0  # local-frame anchor step; every texture period divides it
FAR_M = 600.0  # facades/back row beyond this distance are treated as sky
OBJECT_FAR_M = 220.0  # objects further ahead are not drawn
LAMP_SPACING_M = 35.0
LAMP_POLE_X = 7.4
LAMP_ARM_M = 2.0
CROSSING_SPACING_M = 160.0
_INF = np.float32(1e9)

# Facade types of the first row.
FACADE_BUILDING, FACADE_WALL, FACADE_FENCE, FACADE_VEGETATION = 0, 1, 2, 3

# Instance id layout (see ``_instance_ids``): kind in the top bits, lane/side and slot below,
# so ids are stable per object for the whole run and distinct between kinds.
_KIND_POLE, _KIND_SIGN, _KIND_VEHICLE, _KIND_PERSON = 1, 2, 3, 4


# --- materials: linear RGB albedo, emission ------------------------------------------------------
_MATERIALS: list[tuple[str, tuple[float, float, float]]] = [
    ("sky", (0.36, 0.55, 0.95)),
    ("road", (0.085, 0.085, 0.095)),
    ("marking", (0.62, 0.62, 0.60)),
    ("sidewalk", (0.30, 0.28, 0.27)),
    ("kerb", (0.45, 0.44, 0.42)),
    ("lawn", (0.07, 0.15, 0.04)),
    ("building0", (0.40, 0.33, 0.26)),
    ("building1", (0.30, 0.30, 0.33)),
    ("building2", (0.55, 0.48, 0.40)),
    ("building3", (0.36, 0.18, 0.13)),
    ("wall", (0.38, 0.37, 0.34)),
    ("fence", (0.30, 0.31, 0.33)),
    ("hedge", (0.06, 0.14, 0.04)),
    ("tree", (0.08, 0.17, 0.05)),
    ("back_building", (0.34, 0.34, 0.38)),
    ("back_tree", (0.06, 0.12, 0.05)),
    ("pole", (0.32, 0.32, 0.33)),
    ("lamp", (0.55, 0.55, 0.50)),
    ("sign_red", (0.55, 0.04, 0.04)),
    ("sign_blue", (0.03, 0.10, 0.45)),
    ("sign_yellow", (0.70, 0.55, 0.03)),
    ("sign_white", (0.75, 0.75, 0.75)),
    ("sign_back", (0.35, 0.35, 0.36)),
    ("glass", (0.035, 0.04, 0.05)),
    ("tyre", (0.02, 0.02, 0.02)),
    ("headlight", (0.80, 0.80, 0.80)),
    ("taillight", (0.45, 0.02, 0.02)),
    ("skin", (0.45, 0.30, 0.22)),
]
_PAINTS = [
    (0.60, 0.60, 0.62), (0.04, 0.04, 0.05), (0.50, 0.05, 0.04), (0.05, 0.10, 0.35),
    (0.25, 0.25, 0.27), (0.70, 0.68, 0.60), (0.08, 0.25, 0.10), (0.55, 0.40, 0.05),
    (0.12, 0.12, 0.13), (0.40, 0.42, 0.45), (0.02, 0.20, 0.35), (0.65, 0.30, 0.05),
]
_CLOTHES = [
    (0.05, 0.05, 0.07), (0.45, 0.05, 0.05), (0.06, 0.10, 0.30), (0.55, 0.55, 0.50),
    (0.20, 0.25, 0.10), (0.30, 0.20, 0.12), (0.60, 0.45, 0.05), (0.15, 0.15, 0.18),
    (0.05, 0.25, 0.30), (0.40, 0.12, 0.35),
]
for _i, _c in enumerate(_PAINTS):
    _MATERIALS.append((f"paint{_i}", _c))
for _i, _c in enumerate(_CLOTHES):
    _MATERIALS.append((f"cloth{_i}", _c))

MAT: dict[str, int] = {name: i for i, (name, _) in enumerate(_MATERIALS)}
ALBEDO = np.array([c for _, c in _MATERIALS], dtype=np.float32)  # (M, 3)
ALBEDO_LUM = (ALBEDO @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)).astype(np.float32)
_EMIT_VEHICLE = np.zeros_like(ALBEDO)
_EMIT_VEHICLE[MAT["headlight"]] = (2.6, 2.5, 2.2)
_EMIT_VEHICLE[MAT["taillight"]] = (1.3, 0.06, 0.04)
_EMIT_LAMP = np.zeros_like(ALBEDO)
_EMIT_LAMP[MAT["lamp"]] = (3.5, 2.9, 1.9)
_PAINT0 = MAT["paint0"]
_CLOTH0 = MAT["cloth0"]
_BUILDING0 = MAT["building0"]
_LUM_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

# --- textures -----------------------------------------------------------------------------------
TEX_SIZE = 256
TEX_PAD = 2
TEX_LEVELS = 6
_TEX_STRIDE = TEX_SIZE + 2 * TEX_PAD
# name -> texel size in metres (powers of two so that every period divides ANCHOR_M)
_TEXTURES: list[tuple[str, float]] = [
    ("flat", 1 / 16),
    ("asphalt", 1 / 64),
    ("paving", 1 / 64),
    ("concrete", 1 / 32),
    ("facade", 1 / 16),
    ("foliage", 1 / 32),
    ("fence", 1 / 64),
    ("paint", 1 / 32),
    ("cloth", 1 / 64),
    ("glass", 1 / 16),
    ("grass", 1 / 64),
    ("metal", 1 / 32),
]
TEX: dict[str, int] = {name: i for i, (name, _) in enumerate(_TEXTURES)}
_INV_TEXEL = np.array([1.0 / s for _, s in _TEXTURES], dtype=np.float32)


def _wrap_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with periodic borders, so tiles stay seamless at every level."""
    if sigma <= 0:
        return img.copy()
    pad = min(int(3 * sigma) + 1, img.shape[0])
    big = np.pad(img, pad, mode="wrap")
    out = cv2.GaussianBlur(big, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return out[pad:-pad, pad:-pad]


def _noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    field = _wrap_blur(rng.standard_normal((TEX_SIZE, TEX_SIZE)).astype(np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _make_textures(seed: int) -> dict[str, np.ndarray]:
    """Build the base (level 0) textures; brightness multipliers with mean about 1."""
    rng = np.random.default_rng([seed, 0x7E47])
    yy, xx = np.mgrid[0:TEX_SIZE, 0:TEX_SIZE]
    tex: dict[str, np.ndarray] = {}
    tex["flat"] = np.ones((TEX_SIZE, TEX_SIZE), np.float32)
    tex["asphalt"] = 1 + 0.16 * _noise(rng, 0.6) + 0.10 * _noise(rng, 3) + 0.10 * _noise(rng, 20)
    tiles = rng.uniform(0.88, 1.12, size=(TEX_SIZE // 32, TEX_SIZE // 32)).astype(np.float32)
    paving = np.kron(tiles, np.ones((32, 32), np.float32)) + 0.06 * _noise(rng, 0.8)
    paving[(xx % 32 < 2) | (yy % 32 < 2)] *= 0.55
    tex["paving"] = paving
    concrete = 1 + 0.10 * _noise(rng, 12) + 0.05 * _noise(rng, 1)
    concrete[xx % 64 < 1] *= 0.7
    tex["concrete"] = concrete
    facade = 1 + 0.06 * _noise(rng, 1) + 0.05 * _noise(rng, 8)
    window = ((xx % 64) >= 16) & ((xx % 64) < 48) & ((yy % 64) >= 18) & ((yy % 64) < 46)
    frame = ((xx % 64) >= 15) & ((xx % 64) < 49) & ((yy % 64) >= 17) & ((yy % 64) < 47)
    pane = rng.uniform(0.15, 0.55, size=(TEX_SIZE // 64, TEX_SIZE // 64)).astype(np.float32)
    pane_map = np.kron(pane, np.ones((64, 64), np.float32))
    facade[frame & ~window] = 1.35
    facade = np.where(window, pane_map * (1 + 0.1 * _noise(rng, 4)), facade)
    facade[(yy % 64) >= 60] *= 0.85
    tex["facade"] = facade
    tex["foliage"] = np.clip(1 + 0.5 * _noise(rng, 1.2) + 0.3 * _noise(rng, 4), 0.15, 2.2)
    fence = np.where(xx % 8 < 3, 1.25, 0.35).astype(np.float32)
    fence[((yy % 256) >= 6) & ((yy % 256) < 14)] = 1.25
    fence[((yy % 256) >= 60) & ((yy % 256) < 68)] = 1.25
    fence[xx % 128 < 6] = 1.1
    tex["fence"] = fence * (1 + 0.05 * _noise(rng, 1))
    tex["paint"] = 1 + 0.03 * _noise(rng, 1) + 0.03 * _noise(rng, 10)
    tex["cloth"] = 1 + 0.12 * _noise(rng, 0.8) + 0.08 * _noise(rng, 4)
    tex["glass"] = np.clip(1 + 0.35 * _noise(rng, 16), 0.3, 2.0)
    tex["grass"] = 1 + 0.3 * _noise(rng, 0.7) + 0.15 * _noise(rng, 6)
    tex["metal"] = 1 + 0.05 * _noise(rng, 2)
    return {k: np.clip(v, 0.05, None).astype(np.float32) for k, v in tex.items()}


@functools.lru_cache(maxsize=4)
def texture_atlas(seed: int) -> np.ndarray:
    """Return the tiled atlas: row = texture id, column = blur level, each tile wrap-padded.

    Cached per seed because building it costs tens of milliseconds and every renderer of a
    world (both cameras, every simulator instance) shares it read-only.
    """
    base = _make_textures(seed)
    atlas = np.zeros((len(_TEXTURES) * _TEX_STRIDE, TEX_LEVELS * _TEX_STRIDE), np.float32)
    for ti, (name, _) in enumerate(_TEXTURES):
        for level in range(TEX_LEVELS):
            tile = _wrap_blur(base[name], 0.0 if level == 0 else 0.6 * 2.0 ** (level - 1))
            y0, x0 = ti * _TEX_STRIDE, level * _TEX_STRIDE
            atlas[y0 : y0 + _TEX_STRIDE, x0 : x0 + _TEX_STRIDE] = np.pad(tile, TEX_PAD, "wrap")
    atlas.setflags(write=False)
    return atlas


# --- hashing ------------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, index: np.ndarray | int, salts: int = 1) -> np.ndarray:
    """Deterministic uniforms in [0, 1) for integer indices (any sign) of a named stream.

    The world is infinite, so its random layout cannot be drawn up front; hashing
    ``(seed, stream, index, salt)`` gives every segment and slot its own reproducible draws.

    Returns:
        ``(len(index), salts)`` float64 array; column ``s`` is an independent draw per index.
    """
    key = (seed * 0x9E3779B97F4A7C15 + stream * 0xC2B2AE3D27D4EB4F) & _MASK64
    idx = np.atleast_1d(np.asarray(index, dtype=np.int64)).astype(np.uint64)
    salt = np.arange(salts, dtype=np.uint64) * np.uint64(0x165667B19E3779F9)
    x = _mix64(idx[:, None] * np.uint64(0xD6E8FEB86659FD93) + np.uint64(key) + salt[None, :])
    x = _mix64(x ^ np.uint64((key >> 7) & _MASK64))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# --- surface codes of stuff (one byte per pixel; attributes come from look-up tables) -----------
C_SKY, C_ROAD, C_MARKING, C_KERB, C_WALK, C_LAWN = 0, 1, 2, 3, 5, 6  # kerb: 3 left, 4 right
C_FACADE = 8  # + 8 * right + variant (0-3 building colours, 4 wall, 5 fence, 6 hedge, 7 tree)
C_BACK = 24  # + 2 * right + (0 building, 1 tree line)
C_OBJECT = 255
_VARIANT_TREE = 7


def _code_tables() -> dict[str, np.ndarray]:
    label = np.zeros(256, np.uint8)
    mat = np.zeros(256, np.uint8)
    tex = np.zeros(256, np.uint8)
    vert = np.zeros(256, np.float32)  # 1 for vertical (facade-like) surfaces
    normal = np.zeros((256, 2), np.float32)  # (nx, ny); vertical stuff faces along X
    ground = np.zeros(256, np.float32)  # lit by streetlights
    normal[:, 1] = 1.0

    def put(code: int, lab: int, m: str, t: str, nx: float = 0.0) -> None:
        label[code], mat[code], tex[code] = lab, MAT[m], TEX[t]
        if nx:
            vert[code], normal[code] = 1.0, (nx, 0.0)

    put(C_SKY, BACKGROUND, "sky", "flat")
    put(C_ROAD, ROAD, "road", "asphalt")
    put(C_MARKING, ROAD, "marking", "asphalt")
    put(C_KERB, SIDEWALK, "kerb", "concrete", 1.0)
    put(C_KERB + 1, SIDEWALK, "kerb", "concrete", -1.0)
    put(C_WALK, SIDEWALK, "sidewalk", "paving")
    put(C_LAWN, VEGETATION, "lawn", "grass")
    variants = [(BUILDING, f"building{i}", "facade") for i in range(4)] + [
        (WALL, "wall", "concrete"), (FENCE, "fence", "fence"),
        (VEGETATION, "hedge", "foliage"), (VEGETATION, "tree", "foliage"),
    ]
    for right in (0, 1):
        nx = -1.0 if right else 1.0  # facades face the street
        for var, (lab, m, t) in enumerate(variants):
            put(C_FACADE + 8 * right + var, lab, m, t, nx)
        put(C_BACK + 2 * right, BUILDING, "back_building", "facade", nx)
        put(C_BACK + 2 * right + 1, VEGETATION, "back_tree", "foliage", nx)
    for code in (C_ROAD, C_MARKING, C_WALK):
        ground[code] = 1.0
    return {
        "label": label, "mat": mat, "tex": tex, "vert": vert, "normal": normal,
        "ground": ground, "inv_texel": _INV_TEXEL[tex].astype(np.float32),
    }


_CODES = _code_tables()


# --- scene description --------------------------------------------------------------------------
@dataclass(frozen=True)
class Illumination:
    """How the scene is lit; the lighting module maps each ``Lighting`` to one of these.

    Only scales and a sun direction: geometry, labels and texture are identical under every
    lighting, so the event camera sees the same edges while frames differ in exposure.
    """

    sun: float = 1.0  # scale of sun + sky-lit surface radiance
    sky: float = 1.0  # scale of sky radiance
    ambient: float = 0.35  # fraction of light reaching surfaces facing away from the sun
    sun_direction: tuple[float, float, float] = (-0.4, 0.8, -0.45)  # towards the sun
    lamps: float = 0.0  # streetlight pools on the ground (night)
    lamp_heads: float = 0.0  # lamp head emission scale
    vehicle_lights: float = 1.0  # head/tail light emission scale

    def unit_sun(self) -> np.ndarray:
        """Normalised ``sun_direction`` (float64)."""
        sun = np.asarray(self.sun_direction, np.float64)
        return sun / np.linalg.norm(sun)


@dataclass(frozen=True)
class CameraPose:
    """Camera centre (world, metres) and camera-to-world rotation (OpenCV camera axes)."""

    origin: tuple[float, float, float]
    rotation: np.ndarray  # (3, 3) float64


@dataclass(frozen=True)
class ObjectSet:
    """Objects near the ego at one instant, as column arrays (world coordinates, metres).

    ``vehicles``: x z length width height kind(0 car, 1 van, 2 bus) direction(+1 along +Z)
    paint instance; ``persons``: x z height phase top bottom instance; ``poles``: x z height
    radius arm(signed X length, 0 = none) instance; ``signs``: x y z size shape(0 circle,
    1 rectangle, 2 triangle) facing(-1 printed side towards -Z) instance.
    """

    vehicles: dict[str, np.ndarray]
    persons: dict[str, np.ndarray]
    poles: dict[str, np.ndarray]
    signs: dict[str, np.ndarray]


def _columns(rows: list[dict[str, np.ndarray]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([np.atleast_1d(r[k]) for r in rows]) if rows else np.zeros(0)
            for k in keys}


_VEHICLE_KEYS = ("x", "z", "length", "width", "height", "kind", "direction", "paint", "instance")
_PERSON_KEYS = ("x", "z", "height", "phase", "top", "bottom", "instance")
_POLE_KEYS = ("x", "z", "height", "radius", "arm", "instance")
_SIGN_KEYS = ("x", "y", "z", "size", "shape", "facing", "instance")


def _triangle(phase: np.ndarray) -> np.ndarray:
    """Triangle wave in [-1, 1] with period 1 (walking back and forth)."""
    cyc = np.mod(phase, 1.0)
    return np.where(cyc < 0.5, 4 * cyc - 1, 3 - 4 * cyc)


class World:
    """The procedural street: ego trajectory, facade tables and moving objects at any time.

    Everything is drawn from ``hash_uniform`` of the seed and integer indices (segments, lane
    slots, lattice points), so the world needs no state and any time can be queried directly.
    """

    def __init__(
        self,
        seed: int = 0,
        ego_speed_mps: float = 12.0,
        num_vehicles: int = 6,
        num_persons: int = 4,
    ) -> None:
        self.seed = int(seed)
        self.ego_speed = float(ego_speed_mps)
        self.num_vehicles = int(num_vehicles)
        self.num_persons = int(num_persons)
        u = hash_uniform(self.seed, 1, 0, 16)[0]
        self._phases = 2 * np.pi * u
        self._lamp_offset = (float(u[8]) * LAMP_SPACING_M, float(u[9]) * LAMP_SPACING_M)
        self._crossing_offset = float(u[10]) * CROSSING_SPACING_M
        # Lanes with traffic: (x centre, direction, speed); the ego lane only has a lead car.
        self._lanes = (
            (-1.5 * LANE_WIDTH, -1, 11.0 + 4.0 * float(u[11])),
            (-0.5 * LANE_WIDTH, -1, 12.0 + 5.0 * float(u[12])),
            (1.5 * LANE_WIDTH, 1, 7.0 + 9.0 * float(u[13])),
        )
        self._lead_paint = _PAINT0 + int(u[14] * len(_PAINTS)) % len(_PAINTS)
        self._table_cache: dict[tuple[str, int, int], dict] = {}

    # -- ego -----------------------------------------------------------------------------------
    def ego_distance(self, t_s: float) -> float:
        """Distance driven along the road (world Z of the camera) at ``t_s``."""
        return self.ego_speed * t_s

    def camera_pose(self, t_s: float) -> CameraPose:
        """Camera centre and orientation: lane keeping with a gentle sway tied to distance.

        The sway is a function of distance travelled (not time), so a stopped ego is static.
        """
        s = self.ego_distance(t_s)
        p = self._phases
        w1, w2 = 2 * math.pi / 80.0, 2 * math.pi / 23.0
        x = EGO_LANE_X + 0.30 * math.sin(w1 * s + p[0]) + 0.08 * math.sin(w2 * s + p[1])
        dxds = 0.30 * w1 * math.cos(w1 * s + p[0]) + 0.08 * w2 * math.cos(w2 * s + p[1])
        yaw = math.atan(dxds) + 0.004 * math.sin(2 * math.pi * s / 11.0 + p[2])
        pitch = 0.005 * math.sin(2 * math.pi * s / 7.0 + p[3])
        y = CAMERA_HEIGHT + 0.01 * math.sin(2 * math.pi * s / 5.0 + p[4])
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        flip = np.diag([1.0, -1.0, 1.0])  # camera y points down, world Y up
        return CameraPose((x, y, s), r_yaw @ r_pitch @ flip)

    # -- stuff ---------------------------------------------------------------------------------
    def facade_table(self, k: np.ndarray) -> dict[str, np.ndarray]:
        """First-row segments ``k`` (global indices), both sides, interleaved ``[k, right]``.

        Types are a fresh permutation of the four kinds in every block of four segments, so
        building, wall, fence and vegetation all appear within 64 m on each side.
        """
        out: dict[str, list[np.ndarray]] = {}
        for right in (0, 1):
            stream = 10 + right
            block = np.floor_divide(k, 4)
            keys = (block[:, None] * 4 + np.arange(4)[None, :]).ravel()
            perm = np.argsort(hash_uniform(self.seed, stream, keys).reshape(-1, 4), axis=1)
            ftype = perm[np.arange(k.size), np.mod(k, 4)]
            u = hash_uniform(self.seed, stream + 100, k, 8)
            height = np.choose(ftype, [8.0 + 20.0 * u[:, 0], 1.8 + 1.4 * u[:, 0],
                                       1.1 + 0.8 * u[:, 0], 1.2 + 1.3 * u[:, 0]])
            variant = np.choose(ftype, [np.minimum((u[:, 1] * 4).astype(int), 3),
                                        np.full(k.size, 4), np.full(k.size, 5),
                                        np.full(k.size, 6)])
            cols = {
                "code": (C_FACADE + 8 * right + variant).astype(np.uint8),
                "height": height.astype(np.float32),
                "veg": ftype == FACADE_VEGETATION,
                "tree_z": (np.stack([0.1 + 0.35 * u[:, 2], 0.55 + 0.35 * u[:, 3]], 1)
                           * SEGMENT_M).astype(np.float32),
                "tree_r": np.stack([2.0 + 1.5 * u[:, 4], 2.0 + 1.5 * u[:, 5]], 1)
                .astype(np.float32),
                "tree_top": np.stack([6.0 + 3.0 * u[:, 6], 6.0 + 3.0 * u[:, 7]], 1)
                .astype(np.float32),
            }
            for key, val in cols.items():
                out.setdefault(key, []).append(val)
        return {key: np.stack(val, axis=1).reshape((-1, *val[0].shape[1:]))
                for key, val in out.items()}

    def back_table(self, k: np.ndarray) -> dict[str, np.ndarray]:
        """Back-row segments, both sides interleaved: building, tree line or gap (sky)."""
        out: dict[str, list[np.ndarray]] = {}
        for right in (0, 1):
            u = hash_uniform(self.seed, 20 + right, k, 4)
            kind = np.where(u[:, 0] < 0.45, 0, np.where(u[:, 0] < 0.8, 1, 2))
            cols = {
                "code": (C_BACK + 2 * right + np.minimum(kind, 1)).astype(np.uint8),
                "gap": kind == 2,
                "height": np.where(kind == 0, 10.0 + 25.0 * u[:, 1], 7.0 + 5.0 * u[:, 1])
                .astype(np.float32),
                "phase": (2 * np.pi * u[:, 2]).astype(np.float32),
                "amp": np.where(kind == 1, 1.0 + 2.5 * u[:, 3], 0.0).astype(np.float32),
            }
            for key, val in cols.items():
                out.setdefault(key, []).append(val)
        return {key: np.stack(val, axis=1).reshape(-1) for key, val in out.items()}

    def cached_table(self, row: str, k0: int, count: int) -> dict[str, np.ndarray]:
        """``facade_table``/``back_table`` for segments ``k0 .. k0 + count - 1``, memoised.

        Consecutive renders ask for nearly the same range (the ego moves a segment in about a
        second), and hashing the table costs as much as a tenth of a render.
        """
        key = (row, k0, count)
        table = self._table_cache.get(key)
        if table is None:
            k = np.arange(k0, k0 + count)
            table = self.facade_table(k) if row == "facade" else self.back_table(k)
            self._remember(key, table)
        return table

    def _remember(self, key: tuple[str, int, int], value: dict) -> None:
        if len(self._table_cache) >= 24:
            self._table_cache.pop(next(iter(self._table_cache)))
        self._table_cache[key] = value

    def lamp_offset(self, right: int) -> float:
        """World Z of the streetlight lattice origin on the left (0) or right (1) side."""
        return self._lamp_offset[right]

    def crossing_offset(self) -> float:
        """World Z of the zebra-crossing lattice origin."""
        return self._crossing_offset

    # -- things --------------------------------------------------------------------------------
    def objects(self, t_s: float, z_lo: float, z_hi: float) -> ObjectSet:
        """Objects that may intersect world Z in ``[z_lo, z_hi]`` at time ``t_s``."""
        vehicles: list[dict[str, np.ndarray]] = []
        persons: list[dict[str, np.ndarray]] = []
        if self.num_vehicles > 0:
            self._vehicles(t_s, z_lo, z_hi, vehicles)
        if self.num_persons > 0:
            self._persons(t_s, z_lo, z_hi, persons)
        poles, signs = self._static_objects(math.floor(z_lo / SEGMENT_M),
                                            math.floor(z_hi / SEGMENT_M) + 1)
        return ObjectSet(
            vehicles=_columns(vehicles, _VEHICLE_KEYS), persons=_columns(persons, _PERSON_KEYS),
            poles=poles, signs=signs,
        )

    def _static_objects(
        self, k_lo: int, k_hi: int
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Poles (streetlights, sign posts) and sign plates over segments ``[k_lo, k_hi)``.

        Memoised like the facade tables: they never move and consecutive renders ask for
        nearly the same stretch of street.
        """
        key = ("static", k_lo, k_hi)
        cached = self._table_cache.get(key)
        if cached is not None:
            return cached["poles"], cached["signs"]
        z_lo, z_hi = k_lo * SEGMENT_M, k_hi * SEGMENT_M
        poles: list[dict[str, np.ndarray]] = []
        signs: list[dict[str, np.ndarray]] = []
        for right in (0, 1):
            side = 1.0 if right else -1.0
            off = self.lamp_offset(right)
            j = np.arange(math.floor((z_lo - off) / LAMP_SPACING_M),
                          math.ceil((z_hi - off) / LAMP_SPACING_M) + 1)
            u = hash_uniform(self.seed, 30 + right, j, 1)
            poles.append({
                "x": np.full(j.size, side * LAMP_POLE_X), "z": off + j * LAMP_SPACING_M,
                "height": 7.0 + 1.5 * u[:, 0], "radius": np.full(j.size, 0.11),
                "arm": np.full(j.size, -side * LAMP_ARM_M),
                "instance": _instance_ids(_KIND_POLE, 2 + right, j),
            })
            spacing = 45.0
            j = np.arange(math.floor(z_lo / spacing) - 1, math.ceil(z_hi / spacing) + 1)
            u = hash_uniform(self.seed, 40 + right, j, 3)
            size = 0.6 + 0.25 * u[:, 2]
            x = side * (7.35 + 0.3 * u[:, 1])
            z = (j + 0.1 + 0.5 * u[:, 0]) * spacing
            facing = np.where((right == 1) | (u[:, 2] < 0.3), -1.0, 1.0)
            poles.append({
                "x": x, "z": z, "height": 2.0 + size, "radius": np.full(j.size, 0.04),
                "arm": np.zeros(j.size), "instance": _instance_ids(_KIND_POLE, 4 + right, j),
            })
            signs.append({
                "x": x, "y": 2.0 + 0.5 * size, "z": z + facing * 0.06, "size": size,
                "shape": np.floor(u[:, 1] * 9) % 3, "facing": facing,
                "instance": _instance_ids(_KIND_SIGN, right, j),
            })
        out = {"poles": _columns(poles, _POLE_KEYS), "signs": _columns(signs, _SIGN_KEYS)}
        self._remember(key, out)
        return out["poles"], out["signs"]

    def _vehicles(self, t_s: float, z_lo: float, z_hi: float, out: list) -> None:
        occupancy = 0.75
        per_lane = self.num_vehicles / len(self._lanes)  # vehicles per 100 m per lane
        spacing = max(100.0 * occupancy / per_lane, 16.0)
        slack = 0.5 * max(spacing - 14.0, 0.0)
        for lane, (x0, direction, speed) in enumerate(self._lanes):
            shift = direction * speed * t_s
            j = np.arange(math.floor((z_lo - shift) / spacing) - 1,
                          math.ceil((z_hi - shift) / spacing) + 2)
            u = hash_uniform(self.seed, 50 + lane, j, 6)
            keep = u[:, 0] <= occupancy
            j, u = j[keep], u[keep]
            kind = np.where(u[:, 1] < 0.72, 0, np.where(u[:, 1] < 0.9, 1, 2))
            out.append({
                "x": x0 + 0.4 * (u[:, 4] - 0.5),
                "z": j * spacing + (2 * u[:, 3] - 1) * slack + shift,
                "length": np.choose(kind, [4.0 + 0.8 * u[:, 2], np.full(j.size, 5.2),
                                           10.0 + 2.0 * u[:, 2]]),
                "width": np.choose(kind, [1.8, 2.0, 2.5]).astype(np.float64),
                "height": np.choose(kind, [1.45, 2.2, 3.2]).astype(np.float64),
                "kind": kind, "direction": np.full(j.size, direction),
                "paint": _PAINT0 + (u[:, 5] * len(_PAINTS)).astype(int) % len(_PAINTS),
                "instance": _instance_ids(_KIND_VEHICLE, lane, j),
            })
        # Lead car in the ego lane, breathing in and out of a 16-28 m gap.
        z_lead = self.ego_distance(t_s) + 22.0 + 6.0 * math.sin(
            2 * math.pi * t_s / 19.0 + self._phases[5])
        out.append({
            "x": EGO_LANE_X, "z": z_lead, "length": 4.4, "width": 1.8, "height": 1.5, "kind": 0,
            "direction": 1, "paint": self._lead_paint,
            "instance": _instance_ids(_KIND_VEHICLE, 7, np.zeros(1, np.int64)),
        })

    def _persons(self, t_s: float, z_lo: float, z_hi: float, out: list) -> None:
        spacing = 200.0 / self.num_persons  # per side, so both sides give num_persons / 100 m
        reach = 15.0
        for right in (0, 1):
            j = np.arange(math.floor((z_lo - reach) / spacing) - 1,
                          math.ceil((z_hi + reach) / spacing) + 2)
            u = hash_uniform(self.seed, 60 + right, j, 8)
            amp = 4.0 + 11.0 * u[:, 0]
            dist = (0.9 + 0.8 * u[:, 1]) * t_s + 4 * amp * u[:, 2]
            # Walk back and forth (triangle wave) so a person stays near its slot forever.
            out.append({
                "x": (1.0 if right else -1.0) * (7.6 + 2.0 * u[:, 4]),
                "z": (j + u[:, 3]) * spacing + amp * _triangle(dist / (4 * amp)),
                "height": 1.55 + 0.35 * u[:, 5], "phase": dist / 1.4 * 2 * np.pi,
                "top": _CLOTH0 + (u[:, 6] * len(_CLOTHES)).astype(int) % len(_CLOTHES),
                "bottom": _CLOTH0 + (u[:, 7] * len(_CLOTHES)).astype(int) % len(_CLOTHES),
                "instance": _instance_ids(_KIND_PERSON, right, j),
            })
        # A pedestrian on most zebra crossings, walking across and back.
        off = self.crossing_offset()
        j = np.arange(math.floor((z_lo - off) / CROSSING_SPACING_M),
                      math.ceil((z_hi - off) / CROSSING_SPACING_M) + 1)
        u = hash_uniform(self.seed, 62, j, 4)
        j, u = j[u[:, 0] < 0.8], u[u[:, 0] < 0.8]
        half = 9.0
        dist = 1.2 * t_s + 4 * half * u[:, 1]
        out.append({
            "x": half * _triangle(dist / (4 * half)),
            "z": off + j * CROSSING_SPACING_M + (u[:, 0] - 0.4),
            "height": 1.6 + 0.3 * u[:, 1], "phase": dist / 1.4 * 2 * np.pi,
            "top": _CLOTH0 + (u[:, 2] * len(_CLOTHES)).astype(int) % len(_CLOTHES),
            "bottom": _CLOTH0 + (u[:, 3] * len(_CLOTHES)).astype(int) % len(_CLOTHES),
            "instance": _instance_ids(_KIND_PERSON, 2, j),
        })


def _instance_ids(kind: int, group: int, slot: np.ndarray) -> np.ndarray:
    """Stable positive ids: kind in the top bits, lane/side group and slot below."""
    slot = np.asarray(slot, np.int64)
    return ((kind << 26) | ((group & 0x3F) << 20) | (slot & 0xFFFFF)).astype(np.int64)


# --- rendering ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneRender:
    """One camera's view at one instant."""

    labels: np.ndarray  # (H, W) uint8 DSEC_11 ids
    instances: np.ndarray  # (H, W) int32, 0 = stuff
    depth: np.ndarray  # (H, W) float32 metres along the ray (1e9 for sky)
    radiance: np.ndarray | None  # (H, W, 3) float32 linear RGB (mode "rgb")
    luminance: np.ndarray | None  # (H, W) float32 linear luminance (mode "luminance")


@dataclass
class _Buffers:
    """Per-pixel G-buffer (flat views are written by objects after the stuff pass)."""

    depth: np.ndarray  # float32
    label: np.ndarray  # uint8
    inst: np.ndarray  # int32
    # Shading attributes (None for label-only renders):
    mat: np.ndarray | None = None  # uint8
    tex: np.ndarray | None = None  # uint8 texture id
    u: np.ndarray | None = None  # float32 texture coordinates in texels
    v: np.ndarray | None = None
    fpk: np.ndarray | None = None  # float32 texels per metre / |cos incidence|
    light: np.ndarray | None = None  # float32 irradiance (sun/ambient or sky gradient)
    lamp: np.ndarray | None = None  # float32 streetlight irradiance, night only


@dataclass
class _Rays:
    """World ray directions of one render (2-D) and their safe reciprocals (flat)."""

    o: tuple[float, float, float]
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray
    inv_dx: np.ndarray
    inv_dy: np.ndarray
    inv_dz: np.ndarray


def _safe_inverse(d: np.ndarray) -> np.ndarray:
    return np.copysign(1.0 / np.maximum(np.abs(d), np.float32(1e-7)), d)


class Renderer:
    """Ray caster for one camera of the rig (the rig owns one per camera, sharing the world)."""

    def __init__(self, world: World, camera: CameraModel) -> None:
        self.world = world
        self.camera = camera
        self.height, self.width = camera.height, camera.width
        self._rays = _camera_rays(camera)  # (3, H, W) float32 unit vectors, camera frame
        self._pix_angle = np.float32(1.0 / max(camera.fx, camera.fy))
        self._distorted = bool(np.any(np.abs(camera.distortion) > 0))
        self._atlas = texture_atlas(world.seed)

    # -- public --------------------------------------------------------------------------------
    def render(self, t_us: int, illumination: Illumination, mode: str = "rgb") -> SceneRender:
        """Render the scene at sensor time ``t_us``.

        Args:
            t_us: Time in microseconds.
            illumination: Light scales and sun direction.
            mode: ``"rgb"`` (radiance), ``"luminance"`` (for the event model) or ``"labels"``.
        """
        if mode not in ("rgb", "luminance", "labels"):
            msg = f"unknown render mode {mode!r}; expected 'rgb', 'luminance' or 'labels'"
            raise ValueError(msg)
        t_s = t_us * 1e-6
        pose = self.world.camera_pose(t_s)
        anchor = math.floor(pose.origin[2] / ANCHOR_M) * ANCHOR_M
        o = (float(pose.origin[0]), float(pose.origin[1]), float(pose.origin[2] - anchor))
        dx, dy, dz = self._rotate(pose.rotation)
        rays = _Rays(o, dx, dy, dz, _safe_inverse(dx).ravel(), _safe_inverse(dy).ravel(),
                     _safe_inverse(dz).ravel())
        buf = self._cast_stuff(rays, anchor, illumination, shading=mode != "labels")
        objects = self.world.objects(t_s, pose.origin[2] - 5.0, pose.origin[2] + OBJECT_FAR_M)
        self._cast_objects(buf, objects, rays, anchor, rotation=pose.rotation, illum=illumination)
        if mode == "labels":
            return SceneRender(buf.label, buf.inst, buf.depth, None, None)
        return self._shade(buf, illumination, mode)

    def world_rays(self, t_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World-frame unit ray directions ``(dx, dy, dz)`` of every pixel at ``t_us``.

        Used for effects tied to directions rather than surfaces (the low sun's bloom).
        """
        return self._rotate(self.world.camera_pose(t_us * 1e-6).rotation)

    def _rotate(self, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rot = rotation.astype(np.float32)
        rx, ry, rz = self._rays
        dx = rot[0, 0] * rx + rot[0, 1] * ry + rot[0, 2] * rz
        dy = rot[1, 0] * rx + rot[1, 1] * ry + rot[1, 2] * rz
        dz = rot[2, 0] * rx + rot[2, 1] * ry + rot[2, 2] * rz
        return dx, dy, dz

    # -- stuff ---------------------------------------------------------------------------------
    def _cast_stuff(
        self, rays: _Rays, anchor: float, illum: Illumination, *, shading: bool = True
    ) -> _Buffers:
        """Road, kerbs, sidewalks, facades, lawns, back row and sky for every pixel.

        Written as whole-image arithmetic plus ``copyto(where=...)`` merges: on images this
        size numpy's masked gathers and branchy selects cost far more than a few extra
        multiply-adds. Without ``shading`` only depth, labels and instances are produced.
        """
        ox, oy, oz = rays.o
        dx, dy, dz = rays.dx, rays.dy, rays.dz
        shape = dx.shape
        inv_dx = rays.inv_dx.reshape(shape)
        inv_dy = rays.inv_dy.reshape(shape)
        f32 = np.float32
        down = dy < -1e-6
        t_g = (-oy) * inv_dy
        axg = np.abs(ox + t_g * dx)
        t_k = (KERB_HEIGHT - oy) * inv_dy
        axk = np.abs(ox + t_k * dx)
        low = down & (axk < ROAD_HALF_WIDTH)
        road = low & (axg < ROAD_HALF_WIDTH)
        kerb = low & ~road
        walk = down & (axk >= ROAD_HALF_WIDTH) & (axk < FACADE_X)
        rest = ~(low | walk)
        right = dx > 0
        # First facade row.
        t_f = (np.copysign(f32(FACADE_X), dx) - ox) * inv_dx
        y_f = oy + t_f * dy
        z_f = oz + t_f * dz
        k_lo = math.floor((oz - 5.0) / SEGMENT_M)
        k_hi = math.floor((oz + FAR_M) / SEGMENT_M) + 1
        kf = np.clip(np.floor(z_f * f32(1.0 / SEGMENT_M)), k_lo, k_hi).astype(np.intp)
        fidx = (kf - k_lo) * 2 + right
        ftab = self.world.cached_table("facade", k_lo + round(anchor / SEGMENT_M), k_hi - k_lo + 1)
        near_f = t_f < FAR_M
        code_f = ftab["code"][fidx]
        hit_f = rest & near_f & (y_f < ftab["height"][fidx])
        crown_cand = np.flatnonzero(rest & near_f & ~hit_f & (y_f < 9.6) & ftab["veg"][fidx])
        if crown_cand.size:
            ks = fidx.ravel()[crown_cand]
            zin = z_f.ravel()[crown_cand] - kf.ravel()[crown_cand] * f32(SEGMENT_M)
            yv = y_f.ravel()[crown_cand]
            crown = np.zeros(crown_cand.size, bool)
            for tree in range(2):
                tz, tr = ftab["tree_z"][ks, tree], ftab["tree_r"][ks, tree]
                top = ftab["tree_top"][ks, tree]
                dzt = zin - tz
                ell = (dzt / tr) ** 2 + ((yv - (top - tr)) / (0.85 * tr)) ** 2
                crown |= (ell < 1.0) | ((np.abs(dzt) < 0.18) & (yv < top - tr))
            sel = crown_cand[crown]
            hit_f.ravel()[sel] = True
            code_f.ravel()[sel] = C_FACADE + _VARIANT_TREE + 8 * right.ravel()[sel]
        rest2 = rest & ~hit_f
        # Back row (skyline) past the lawns, unless a descending ray meets the lawn first.
        t_b = (np.copysign(f32(BACK_X), dx) - ox) * inv_dx
        y_b = oy + t_b * dy
        z_b = oz + t_b * dz
        b_lo = math.floor((oz - 5.0) / BACK_SEGMENT_M)
        b_hi = math.floor((oz + FAR_M) / BACK_SEGMENT_M) + 1
        kb = np.clip(np.floor(z_b * f32(1.0 / BACK_SEGMENT_M)), b_lo, b_hi).astype(np.intp)
        bidx = (kb - b_lo) * 2 + right
        btab = self.world.cached_table(
            "back", b_lo + round(anchor / BACK_SEGMENT_M), b_hi - b_lo + 1)
        bump_shift = f32((_BUMP_FREQ * anchor) % (2 * math.pi))  # keep bumps world-anchored
        h_b = btab["height"][bidx] + btab["amp"][bidx] * np.abs(
            np.sin(z_b * f32(_BUMP_FREQ) + (btab["phase"][bidx] + bump_shift)))
        hit_b = (rest2 & ~(down & (axg < BACK_X)) & (t_b < FAR_M) & (y_b < h_b)
                 & ~btab["gap"][bidx])
        lawn = rest2 & down & ~hit_b
        sky = rest2 & ~down & ~hit_b
        # Merge depth and surface code.
        t = t_g
        np.copyto(t, t_k, where=walk)
        np.copyto(t, (np.copysign(f32(ROAD_HALF_WIDTH), dx) - ox) * inv_dx, where=kerb)
        np.copyto(t, t_f, where=hit_f)
        np.copyto(t, t_b, where=hit_b)
        np.copyto(t, _INF, where=sky)
        code = np.zeros(shape, np.uint8)
        np.copyto(code, C_ROAD, where=road)
        np.copyto(code, right.view(np.uint8) + np.uint8(C_KERB), where=kerb)
        np.copyto(code, C_WALK, where=walk)
        np.copyto(code, C_LAWN, where=lawn)
        np.copyto(code, code_f, where=hit_f)
        np.copyto(code, btab["code"][bidx], where=hit_b)
        if not shading:
            return _Buffers(depth=t, label=cv2.LUT(code, _CODES["label"]),
                            inst=np.zeros(shape, np.int32))
        px = ox + t * dx
        py = oy + t * dy
        pz = oz + t * dz
        ady = np.abs(dy)
        paint = self._road_markings(px, pz, anchor, t, ady)
        paint &= road
        np.copyto(code, C_MARKING, where=paint)
        # Per-pixel attributes from the surface code.
        vert = cv2.LUT(code, _CODES["vert"])
        inv_texel = cv2.LUT(code, _CODES["inv_texel"])
        u = (px + vert * (pz - px)) * inv_texel
        v = (pz + vert * (py - pz)) * inv_texel
        cos_inc = ady + vert * (np.abs(dx) - ady)
        fpk = inv_texel / np.maximum(cos_inc, f32(0.02))
        sun = illum.unit_sun()
        amb = illum.ambient
        nrm = _CODES["normal"]
        light_lut = (illum.sun * (amb + (1 - amb) * np.maximum(
            nrm[:, 0] * sun[0] + nrm[:, 1] * sun[1], 0.0))).astype(np.float32)
        light = cv2.LUT(code, light_lut)
        sky_light = illum.sky * (0.55 + 0.65 * np.exp(-4.0 * np.maximum(dy, f32(0.0))))
        np.copyto(light, sky_light.astype(np.float32), where=sky)
        lamp = None
        if illum.lamps > 0:
            lamp = illum.lamps * self._lamp_pools(px, pz, anchor) * cv2.LUT(code, _CODES["ground"])
        return _Buffers(
            depth=t, label=cv2.LUT(code, _CODES["label"]), inst=np.zeros(shape, np.int32),
            mat=cv2.LUT(code, _CODES["mat"]), tex=cv2.LUT(code, _CODES["tex"]), u=u, v=v,
            fpk=fpk, light=light, lamp=lamp,
        )

    def _road_markings(
        self, x: np.ndarray, z: np.ndarray, anchor: float, t: np.ndarray, ady: np.ndarray
    ) -> np.ndarray:
        """Where road paint is (lane lines, dashes, zebra crossings), as a boolean image.

        Paint is drawn only where a line is wider than the pixel footprint, so distant dashes
        fade out instead of flickering (which would otherwise fire spurious events).
        """
        f32 = np.float32
        foot_x = t * self._pix_angle
        foot_z = foot_x / np.maximum(ady, f32(0.02))
        ax = np.abs(x)
        half = f32(0.075)
        line = np.minimum(ax, np.abs(ax - f32(ROAD_HALF_WIDTH - 0.25))) < half
        lane = np.abs(ax - f32(LANE_WIDTH)) < half
        lane &= _frac(z * f32(1 / 8.0)) < f32(3.0 / 8.0)  # 8 m divides ANCHOR_M: dashes stay put
        lane &= foot_z < 3.0
        paint = (line | lane) & (foot_x < 2 * half)
        shift = (anchor - self.world.crossing_offset() + 0.5 * CROSSING_SPACING_M) % (
            CROSSING_SPACING_M)
        zc = _frac((z + f32(shift)) * f32(1.0 / CROSSING_SPACING_M)) - f32(0.5)
        zebra = (np.abs(zc) < f32(2.0 / CROSSING_SPACING_M)) & (_frac(x) < 0.5)
        zebra &= ax < ROAD_HALF_WIDTH - 0.5
        zebra &= (foot_x < 0.5) & (foot_z < 4.0)
        return paint | zebra

    def _lamp_pools(self, x: np.ndarray, z: np.ndarray, anchor: float) -> np.ndarray:
        """Streetlight illumination on the ground: one soft pool under each lamp head."""
        f32 = np.float32
        total = np.zeros(x.shape, np.float32)
        for right in (0, 1):
            shift = (anchor - self.world.lamp_offset(right)) % LAMP_SPACING_M
            q = (z + f32(shift)) * f32(1.0 / LAMP_SPACING_M)
            dzl = (q - np.round(q)) * f32(LAMP_SPACING_M)
            xl = f32((1.0 if right else -1.0) * (LAMP_POLE_X - LAMP_ARM_M))
            total += np.exp(-((x - xl) ** 2 + dzl**2) * f32(1.0 / (2 * 5.5**2)))
        return total

    # -- things --------------------------------------------------------------------------------
    def _cast_objects(
        self, buf: _Buffers, objects: ObjectSet, rays: _Rays, anchor: float, *,
        rotation: np.ndarray, illum: Illumination,
    ) -> None:
        """Cast every object primitive inside its projected box, then merge by depth.

        Primitives of one kind are processed together (pixels of all their boxes in one flat
        list), so the cost is a fixed number of numpy calls per kind, not per object.
        """
        prims = {k: p for k, p in _primitives(objects, anchor).items() if p["aabb"].shape[0]}
        if not prims:
            return
        sun = illum.unit_sun()
        keep_all, rects_all = self._project_boxes(
            np.concatenate([p["aabb"] for p in prims.values()]), rays.o, rotation)
        ends = np.cumsum([p["aabb"].shape[0] for p in prims.values()])
        cands = []
        for (kind, all_params), end in zip(prims.items(), ends.tolist(), strict=True):
            start = end - all_params["aabb"].shape[0]
            keep, rects = keep_all[start:end], rects_all[start:end]
            if not keep.any():
                continue
            params = {k: v[keep] for k, v in all_params.items()}
            pix, own = _rect_pixels(rects[keep], self.width)
            if pix.size == 0:
                continue
            cand = _INTERSECT[kind](rays, params, pix, own, sun=sun, amb=illum.ambient)
            if cand is not None and cand["pix"].size:
                cands.append(cand)
        if not cands:
            return
        cat = {k: np.concatenate([c[k] for c in cands]) for k in cands[0]}
        pix, t = cat["pix"], cat["t"].astype(np.float32)
        depth = buf.depth.ravel()
        np.minimum.at(depth, pix, t)
        win = t == depth[pix]
        pix = pix[win]
        buf.label.ravel()[pix] = cat["label"][win]
        buf.inst.ravel()[pix] = cat["inst"][win]
        if buf.mat is None:
            return
        buf.mat.ravel()[pix] = cat["mat"][win]
        tex = cat["tex"][win]
        buf.tex.ravel()[pix] = tex
        inv_texel = _INV_TEXEL[tex]
        buf.u.ravel()[pix] = cat["u"][win] * inv_texel
        buf.v.ravel()[pix] = cat["v"][win] * inv_texel
        buf.fpk.ravel()[pix] = cat["fpk"][win] * inv_texel
        buf.light.ravel()[pix] = illum.sun * cat["shade"][win]
        if buf.lamp is not None:
            buf.lamp.ravel()[pix] = 0.0

    def _project_boxes(
        self, aabb: np.ndarray, o: tuple[float, float, float], rotation: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Visible flags and pixel rectangles ``(v0, v1, u0, u1)`` for local-frame AABBs.

        Boxes are clipped to just in front of the camera (parts further back are outside the
        field of view) and culled below a fixed angular size, the same for both cameras so
        both see the same objects; sub-pixel poles would only alias into flicker.
        """
        n = aabb.shape[0]
        lo = aabb[:, :3].copy()
        hi = aabb[:, 3:]
        lo[:, 2] = np.maximum(lo[:, 2], o[2] + 0.3)
        keep = hi[:, 2] > lo[:, 2]
        bits = np.arange(8)
        corners = np.stack([
            np.where(bits[None, :] & 1, hi[:, 0:1], lo[:, 0:1]),
            np.where(bits[None, :] & 2, hi[:, 1:2], lo[:, 1:2]),
            np.where(bits[None, :] & 4, hi[:, 2:3], lo[:, 2:3]),
        ], axis=-1)  # (n, 8, 3)
        cam = (corners - np.asarray(o)[None, None, :]) @ rotation  # world -> camera
        zc = cam[..., 2]
        front = np.all(zc > 0.05, axis=1)
        zs = np.maximum(zc, 0.05)
        ang_x = cam[..., 0] / zs
        ang_y = cam[..., 1] / zs
        size = np.minimum(ang_x.max(1) - ang_x.min(1), ang_y.max(1) - ang_y.min(1))
        keep &= (size > _MIN_ANGLE) | ~front
        keep &= np.linalg.norm(cam, axis=-1).min(1) < OBJECT_FAR_M + 20.0
        h, w = self.height, self.width
        if self._distorted:
            pts, _ = cv2.projectPoints(
                cam.reshape(-1, 3).astype(np.float64), np.zeros(3), np.zeros(3),
                self.camera.camera_matrix, self.camera.distortion)
            uu = pts[:, 0, 0].reshape(n, 8)
            vv = pts[:, 0, 1].reshape(n, 8)
            margin = 4
        else:
            k = self.camera.camera_matrix
            uu = k[0, 0] * ang_x + k[0, 2]
            vv = k[1, 1] * ang_y + k[1, 2]
            margin = 1
        rects = np.stack([
            np.clip(np.floor(vv.min(1)) - margin, 0, h),
            np.clip(np.ceil(vv.max(1)) + margin + 1, 0, h),
            np.clip(np.floor(uu.min(1)) - margin, 0, w),
            np.clip(np.ceil(uu.max(1)) + margin + 1, 0, w),
        ], axis=1).astype(np.int64)
        rects[~front] = (0, h, 0, w)  # straddles the camera plane: search the whole image
        keep &= (rects[:, 1] > rects[:, 0]) & (rects[:, 3] > rects[:, 2])
        return keep, rects

    # -- shading -------------------------------------------------------------------------------
    def _shade(self, buf: _Buffers, illum: Illumination, mode: str) -> SceneRender:
        f32 = np.float32
        foot = buf.depth * self._pix_angle * buf.fpk
        _, exponent = np.frexp(np.maximum(foot, f32(1.0)))
        level = np.minimum(exponent - 1, TEX_LEVELS - 1).astype(np.float32)
        size = f32(TEX_SIZE)
        map_x = buf.u - size * np.floor(buf.u * f32(1.0 / TEX_SIZE))
        map_x += level * f32(_TEX_STRIDE) + f32(TEX_PAD)
        map_y = buf.v - size * np.floor(buf.v * f32(1.0 / TEX_SIZE))
        map_y += cv2.LUT(buf.tex, _TEX_ROW)
        texture = cv2.remap(self._atlas, map_x, map_y, cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        light = buf.light
        if buf.lamp is not None:
            light = light + buf.lamp
        light = light * texture
        emit = _EMIT_VEHICLE * illum.vehicle_lights + _EMIT_LAMP * illum.lamp_heads
        emitting = bool(np.any(emit > 0))
        if mode == "luminance":
            lum = cv2.LUT(buf.mat, _pad256(ALBEDO_LUM)) * light
            if emitting:
                lum += cv2.LUT(buf.mat, _pad256(emit @ _LUM_WEIGHTS))
            return SceneRender(buf.label, buf.inst, buf.depth, None, lum)
        mat3 = cv2.merge([buf.mat, buf.mat, buf.mat])
        rgb = cv2.LUT(mat3, _pad256(ALBEDO).reshape(256, 1, 3)) * light[..., None]
        if emitting:
            rgb += cv2.LUT(mat3, _pad256(emit).reshape(256, 1, 3))
        return SceneRender(buf.label, buf.inst, buf.depth, rgb, None)


_BUMP_FREQ = 0.45  # rad/m, crowns along a back-row tree line
_MIN_ANGLE = 1.0 / 650.0  # radians; objects narrower than this are not drawn
_TEX_ROW = np.zeros(256, np.float32)
_TEX_ROW[: len(_TEXTURES)] = np.arange(len(_TEXTURES)) * _TEX_STRIDE + TEX_PAD


def _frac(x: np.ndarray) -> np.ndarray:
    """``x mod 1`` (np.mod on floats is several times slower than this)."""
    return x - np.floor(x)


def _pad256(table: np.ndarray) -> np.ndarray:
    out = np.zeros((256, *table.shape[1:]), np.float32)
    out[: table.shape[0]] = table
    return out


def _camera_rays(camera: CameraModel) -> np.ndarray:
    """Return unit ray directions (camera frame) through every pixel centre, undistorted."""
    h, w = camera.height, camera.width
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    if np.any(np.abs(camera.distortion) > 0):
        pts = np.stack([uu.ravel(), vv.ravel()], axis=1).reshape(-1, 1, 2)
        norm = cv2.undistortPoints(pts, camera.camera_matrix, camera.distortion).reshape(h, w, 2)
        x, y = norm[..., 0], norm[..., 1]
    else:
        x = (uu - camera.cx) / camera.fx
        y = (vv - camera.cy) / camera.fy
    rays = np.stack([x, y, np.ones_like(x)])
    rays /= np.linalg.norm(rays, axis=0, keepdims=True)
    return rays.astype(np.float32)


def _rect_pixels(rects: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices of every rectangle, and which rectangle each came from."""
    heights = rects[:, 1] - rects[:, 0]
    widths = rects[:, 3] - rects[:, 2]
    sizes = heights * widths
    own = np.repeat(np.arange(rects.shape[0]), sizes)
    local = np.arange(own.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    w_own = widths[own]
    row = local // w_own
    col = local - row * w_own
    pix = (rects[own, 0] + row) * width + rects[own, 2] + col
    return pix, own


# --- primitives ---------------------------------------------------------------------------------
# Box styles: what a box is part of decides its materials.
_STYLE_CAR_BODY, _STYLE_CAR_CABIN, _STYLE_VAN, _STYLE_BUS, _STYLE_ARM, _STYLE_LAMP = range(6)
_STYLE_LABEL = np.array([VEHICLE, VEHICLE, VEHICLE, VEHICLE, POLE, POLE], np.uint8)
_STYLE_WIN_LO = np.array([9.0, 0.0, 1.1, 1.2, 9.0, 9.0], np.float32)
_STYLE_WIN_HI = np.array([0.0, 9.0, 1.9, 2.7, 0.0, 0.0], np.float32)


def _primitives(objs: ObjectSet, anchor: float) -> dict[str, dict[str, np.ndarray]]:
    """Turn objects into boxes, cylinders, plates and billboards in the local frame."""
    veh = objs.vehicles
    boxes: list[dict[str, np.ndarray]] = []
    if veh["x"].size:
        x, z = veh["x"], veh["z"] - anchor
        hw, hl, h = 0.5 * veh["width"], 0.5 * veh["length"], veh["height"]
        length, d = veh["length"], veh["direction"]
        car = veh["kind"] == 0
        common = {"vx": x, "hw": hw, "vh": h, "dir": d, "vz": z, "len": length,
                  "paint": veh["paint"], "inst": veh["instance"]}
        body_top = np.where(car, 0.55 * h, h)
        style = np.choose(veh["kind"].astype(int), [_STYLE_CAR_BODY, _STYLE_VAN, _STYLE_BUS])
        boxes.append({"lo": np.stack([x - hw, 0 * x, z - hl], 1),
                      "hi": np.stack([x + hw, body_top, z + hl], 1), "style": style, **common})
        if car.any():
            c = {k: v[car] for k, v in common.items()}
            cz, chl, cl, cd = c["vz"], 0.5 * c["len"], c["len"], c["dir"]
            boxes.append({
                "lo": np.stack([c["vx"] - c["hw"] + 0.1, 0.55 * c["vh"],
                                cz - chl + (0.25 - 0.05 * cd) * cl], 1),
                "hi": np.stack([c["vx"] + c["hw"] - 0.1, c["vh"],
                                cz + chl - (0.25 + 0.05 * cd) * cl], 1),
                "style": np.full(cz.size, _STYLE_CAR_CABIN), **c,
            })
    pol = objs.poles
    arm = pol["arm"] != 0
    if arm.any():
        x, z, h, a = pol["x"][arm], pol["z"][arm] - anchor, pol["height"][arm], pol["arm"][arm]
        zero = np.zeros(x.size)
        common = {"vx": x + a, "hw": zero + 0.35, "vh": h, "dir": zero + 1, "vz": z,
                  "len": zero + 0.3, "paint": zero + MAT["pole"], "inst": pol["instance"][arm]}
        boxes.append({"lo": np.stack([np.minimum(x, x + a), h - 0.15, z - 0.07], 1),
                      "hi": np.stack([np.maximum(x, x + a), h, z + 0.07], 1),
                      "style": zero + _STYLE_ARM, **common})
        boxes.append({"lo": np.stack([x + a - 0.35, h - 0.28, z - 0.16], 1),
                      "hi": np.stack([x + a + 0.35, h - 0.05, z + 0.16], 1),
                      "style": zero + _STYLE_LAMP, **common})
    prims: dict[str, dict[str, np.ndarray]] = {}
    if boxes:
        b = {k: np.concatenate([bx[k] for bx in boxes]) for k in boxes[0]}
        b["aabb"] = np.concatenate([b["lo"], b["hi"]], axis=1)
        for axis, name in enumerate("xyz"):
            b[f"lo_{name}"] = b["lo"][:, axis]
            b[f"hi_{name}"] = b["hi"][:, axis]
        del b["lo"], b["hi"]
        b["style"] = b["style"].astype(np.intp)
        prims["box"] = b
    x, z, r, h = pol["x"], pol["z"] - anchor, pol["radius"], pol["height"]
    prims["cylinder"] = {"x": x, "z": z, "r": r, "h": h, "inst": pol["instance"],
                         "aabb": np.stack([x - r, 0 * x, z - r, x + r, h, z + r], 1)}
    sg = objs.signs
    x, y, z, half = sg["x"], sg["y"], sg["z"] - anchor, 0.5 * sg["size"]
    prims["plate"] = {"x": x, "y": y, "z": z, "half": half, "shape": sg["shape"].astype(np.intp),
                      "facing": sg["facing"], "inst": sg["instance"],
                      "aabb": np.stack([x - half, y - half, z - 0.03, x + half, y + half, z + 0.03],
                                       1)}
    ps = objs.persons
    x, z, h = ps["x"], ps["z"] - anchor, ps["height"]
    prims["billboard"] = {"x": x, "z": z, "h": h, "swing": 0.11 * np.sin(ps["phase"]),
                          "top": ps["top"], "bottom": ps["bottom"], "inst": ps["instance"],
                          "aabb": np.stack([x - 0.45, 0 * x, z - 0.45, x + 0.45, h, z + 0.45], 1)}
    # float32 per-pixel maths (the AABBs stay float64 for the projection).
    return {kind: {k: (v.astype(np.float32) if v.dtype == np.float64 and k != "aabb" else v)
                   for k, v in p.items()} for kind, p in prims.items()}


def _lit(sun: np.ndarray, ambient: float, nx, ny, nz) -> np.ndarray:
    dot = nx * float(sun[0]) + ny * float(sun[1]) + nz * float(sun[2])
    return (ambient + (1 - ambient) * np.maximum(dot, 0.0)).astype(np.float32)


def _result(pix, t, *, label, inst, mat, tex, u, v, fpk, shade) -> dict[str, np.ndarray]:
    n = pix.size
    return {
        "pix": pix, "t": t.astype(np.float32),
        "label": np.broadcast_to(np.asarray(label, np.uint8), (n,)),
        "inst": np.broadcast_to(np.asarray(inst, np.int32), (n,)),
        "mat": np.broadcast_to(np.asarray(mat, np.uint8), (n,)),
        "tex": np.broadcast_to(np.asarray(tex, np.uint8), (n,)),
        "u": u.astype(np.float32), "v": v.astype(np.float32),
        "fpk": np.broadcast_to(np.asarray(fpk, np.float32), (n,)),
        "shade": np.broadcast_to(np.asarray(shade, np.float32), (n,)),
    }


def _hit_boxes(rays: _Rays, p: dict, pix: np.ndarray, own: np.ndarray, *, sun, amb):
    """Slab test for axis-aligned boxes; materials from the box style (vehicles, lamp arms)."""
    ox, oy, oz = rays.o
    t_near = None
    t_far = None
    entry = []
    for name, oc, inv in (("x", ox, rays.inv_dx), ("y", oy, rays.inv_dy), ("z", oz, rays.inv_dz)):
        iv = inv[pix]
        t1 = (p[f"lo_{name}"][own] - np.float32(oc)) * iv
        t2 = (p[f"hi_{name}"][own] - np.float32(oc)) * iv
        tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
        entry.append(tmin)
        t_near = tmin if t_near is None else np.maximum(t_near, tmin)
        t_far = tmax if t_far is None else np.minimum(t_far, tmax)
    hit = np.flatnonzero((t_near <= t_far) & (t_near > 0.05))
    if hit.size == 0:
        return None
    pix, own, t = pix[hit], own[hit], t_near[hit]
    ax_x = entry[0][hit] == t
    ax_y = ~ax_x & (entry[1][hit] == t)
    ax_z = ~ax_x & ~ax_y
    dx, dy, dz = rays.dx.ravel()[pix], rays.dy.ravel()[pix], rays.dz.ravel()[pix]
    px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
    nx = -np.sign(dx) * ax_x
    ny = -np.sign(dy) * ax_y
    nz = -np.sign(dz) * ax_z
    style = p["style"][own]
    vehicle = style <= _STYLE_BUS
    lx = np.abs(px - p["vx"][own])
    hw, vh = p["hw"][own], p["vh"][own]
    nf = nz * p["dir"][own]  # +1 on a vehicle's front face, -1 on its rear
    fwd = (pz - p["vz"][own]) * p["dir"][own]
    win_lo, win_hi = _STYLE_WIN_LO[style], _STYLE_WIN_HI[style]
    cabin_glass = (style == _STYLE_CAR_CABIN) & (ny <= 0) & (py < vh - 0.08)
    side_win = (ax_x & (py > win_lo) & (py < win_hi)
                & ((style != _STYLE_VAN) | (fwd > 0.1 * p["len"][own])))
    front_win = (nf > 0) & (py > win_lo) & (py < vh - 0.15)
    glass = cabin_glass | ((style == _STYLE_VAN) | (style == _STYLE_BUS)) & (side_win | front_win)
    mat = p["paint"][own].astype(np.uint8)
    mat[glass] = MAT["glass"]
    mat[vehicle & (py < 0.32) & (ny <= 0)] = MAT["tyre"]
    lamp_zone = vehicle & (py > 0.5) & (py < 0.7) & (lx > hw - 0.4) & (lx < hw - 0.08)
    mat[lamp_zone & (nf > 0)] = MAT["headlight"]
    mat[lamp_zone & (nf < 0)] = MAT["taillight"]
    mat[(style == _STYLE_LAMP) & (ny < 0)] = MAT["lamp"]
    tex = np.where(vehicle & ~glass, TEX["paint"], np.where(glass, TEX["glass"], TEX["metal"]))
    u = np.where(ax_x, pz - p["vz"][own], px - p["vx"][own])
    v = np.where(ax_y, pz - p["vz"][own], py)
    cos_inc = np.abs(nx * dx + ny * dy + nz * dz)
    return _result(pix, t, label=_STYLE_LABEL[style], inst=p["inst"][own], mat=mat, tex=tex,
                   u=u, v=v, fpk=1.0 / np.maximum(cos_inc, 0.05), shade=_lit(sun, amb, nx, ny, nz))


def _hit_cylinders(rays: _Rays, p: dict, pix: np.ndarray, own: np.ndarray, *, sun, amb):
    """Vertical cylinders (poles, sign posts): ray/circle in the ground plane, then height."""
    ox, oy, oz = rays.o
    dx, dy, dz = rays.dx.ravel()[pix], rays.dy.ravel()[pix], rays.dz.ravel()[pix]
    cx, cz, r = p["x"][own], p["z"][own], p["r"][own]
    rx, rz = ox - cx, oz - cz
    a = dx * dx + dz * dz
    b = rx * dx + rz * dz
    c = rx * rx + rz * rz - r * r
    disc = b * b - a * c
    ok = np.flatnonzero((disc >= 0) & (a > 1e-9))
    if ok.size == 0:
        return None
    t = (-b[ok] - np.sqrt(disc[ok])) / a[ok]
    y = oy + t * dy[ok]
    good = (t > 0.05) & (y >= 0) & (y <= p["h"][own[ok]])
    sel = ok[good]
    if sel.size == 0:
        return None
    t, y, o2 = t[good], y[good], own[sel]
    nx = (rx[sel] + t * dx[sel]) / r[sel]
    nz = (rz[sel] + t * dz[sel]) / r[sel]
    cos_inc = np.abs(nx * dx[sel] + nz * dz[sel])
    return _result(pix[sel], t, label=POLE, inst=p["inst"][o2], mat=MAT["pole"],
                   tex=TEX["metal"], u=np.arctan2(nz, nx) * r[sel], v=y,
                   fpk=1.0 / np.maximum(cos_inc, 0.05), shade=_lit(sun, amb, nx, 0.0, nz))


def _hit_plates(rays: _Rays, p: dict, pix: np.ndarray, own: np.ndarray, *, sun, amb):
    """Sign plates in a plane of constant Z: circle, rectangle or triangle, grey back."""
    ox, oy, oz = rays.o
    t = (p["z"][own] - oz) * rays.inv_dz[pix]
    px = ox + t * rays.dx.ravel()[pix]
    py = oy + t * rays.dy.ravel()[pix]
    half = p["half"][own]
    a = (px - p["x"][own]) / half
    b = (py - p["y"][own]) / half
    shape = p["shape"][own]
    r = np.sqrt(a * a + b * b)
    apex = 0.5 * (b + 1.0)  # 0 at a triangle's base, 1 at its apex
    inside = np.choose(shape, [r <= 1.0, (np.abs(a) <= 1.0) & (np.abs(b) <= 1.0),
                               (apex >= 0) & (np.abs(a) <= 1.0 - apex)])
    sel = np.flatnonzero(inside & (t > 0.05))
    if sel.size == 0:
        return None
    a, b, r, apex, shape, o2 = a[sel], b[sel], r[sel], apex[sel], shape[sel], own[sel]
    border = np.choose(shape, [r > 0.72, (np.abs(a) > 0.84) | (np.abs(b) > 0.84),
                               (apex < 0.16) | (np.abs(a) > 0.72 - apex)])
    inner = np.array([MAT["sign_white"], MAT["sign_blue"], MAT["sign_yellow"]], np.uint8)
    outer = np.array([MAT["sign_red"], MAT["sign_white"], MAT["sign_red"]], np.uint8)
    facing = p["facing"][o2]
    dz = rays.dz.ravel()[pix[sel]]
    front = dz * facing < 0  # the ray meets the printed side
    mat = np.where(front, np.where(border, outer[shape], inner[shape]), MAT["sign_back"])
    return _result(pix[sel], t[sel], label=TRAFFIC_SIGN, inst=p["inst"][o2], mat=mat,
                   tex=TEX["metal"], u=px[sel], v=py[sel],
                   fpk=1.0 / np.maximum(np.abs(dz), 0.05),
                   shade=_lit(sun, amb, 0.0, 0.0, -np.sign(dz)))


def _hit_billboards(rays: _Rays, p: dict, pix: np.ndarray, own: np.ndarray, *, sun, amb):
    """Persons: a silhouette (head, torso, arms, swinging legs) on a vertical billboard.

    The billboard turns to face the shared camera centre, so both cameras of the coaxial rig
    see exactly the same surface.
    """
    ox, oy, oz = rays.o
    nx_p, nz_p = p["x"] - ox, p["z"] - oz
    dist = np.maximum(np.hypot(nx_p, nz_p), 1e-3)
    nx, nz, dist = (nx_p / dist)[own], (nz_p / dist)[own], dist[own]
    dx, dy, dz = rays.dx.ravel()[pix], rays.dy.ravel()[pix], rays.dz.ravel()[pix]
    denom = np.maximum(dx * nx + dz * nz, 1e-4)
    t = dist / denom
    lat = (ox + t * dx - p["x"][own]) * nz - (oz + t * dz - p["z"][own]) * nx
    y = oy + t * dy
    h = p["h"][own]
    alat = np.abs(lat)
    head = (lat**2 + ((y - (h - 0.11)) * 0.85) ** 2) < 0.105**2
    neck = (y > h - 0.26) & (y <= h - 0.11) & (alat < 0.05)
    torso_w = 0.19 - 0.05 * np.clip((0.80 * h - y) / (0.3 * h), 0, 1)
    torso = (y > 0.47 * h) & (y <= h - 0.24) & (alat < torso_w)
    swing = p["swing"][own] * np.clip((0.5 * h - y) / (0.5 * h), 0.0, 1.0)
    legs = (y >= 0.0) & (y <= 0.5 * h) & (
        (np.abs(lat - 0.07 - swing) < 0.065) | (np.abs(lat + 0.07 + swing) < 0.065))
    arm_sw = -0.5 * p["swing"][own] * np.clip((0.80 * h - y) / (0.35 * h), 0.0, 1.0)
    arms = (y > 0.45 * h) & (y <= 0.80 * h) & (
        (np.abs(lat - 0.22 - arm_sw) < 0.045) | (np.abs(lat + 0.22 + arm_sw) < 0.045))
    skin = head | neck
    sel = np.flatnonzero((skin | torso | legs | arms) & (dist > 0.3))
    if sel.size == 0:
        return None
    o2 = own[sel]
    mat = np.where(skin[sel], MAT["skin"], np.where(legs[sel], p["bottom"][o2], p["top"][o2]))
    shade = 0.7 + 0.3 * np.sqrt(np.clip(1 - (lat[sel] / 0.25) ** 2, 0, 1))
    base = _lit(sun, amb, -nx[sel], 0.0, -nz[sel])
    return _result(pix[sel], t[sel], label=PERSON, inst=p["inst"][o2], mat=mat,
                   tex=TEX["cloth"], u=lat[sel], v=y[sel],
                   fpk=1.0 / np.maximum(denom[sel], 0.05), shade=base * shade)


_INTERSECT = {
    "box": _hit_boxes,
    "cylinder": _hit_cylinders,
    "plate": _hit_plates,
    "billboard": _hit_billboards,
}

__all__ = [
    "ANCHOR_M",
    "CAMERA_HEIGHT",
    "CameraPose",
    "Illumination",
    "ObjectSet",
    "Renderer",
    "SceneRender",
    "World",
    "hash_uniform",
    "texture_atlas",
]
