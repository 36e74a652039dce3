"""Seeded synthetic driving scenes with exact instance masks.

A world holds road users on a ground plane around a stopped ego vehicle (x to the right,
z forward, metres); each has a trajectory, so the same world renders moving multi-camera sequences
(front, rear, left and right cameras on the ego vehicle) as well as single training images.
Rendering is a pinhole projection of the road, lane markings, sidewalks, buildings and
billboard silhouettes, drawn far to near so nearer objects occlude farther ones, followed by
lighting changes, sensor noise, blur and JPEG artefacts. Every visible object yields its
exact visible mask, class and stable object id.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.data.classes import CLASS_INDEX
from pipeline.data.shapes import SIZES, draw_billboard, person_outfit

LANE_WIDTH = 3.5
ROAD_HALF = 1.5 * LANE_WIDTH  # three lanes, ego in the middle one
SIDEWALK = (ROAD_HALF, ROAD_HALF + 3.0)
CAMERA_YAWS = {"front": 0.0, "right": 90.0, "rear": 180.0, "left": -90.0}
MIN_AREA = 48  # pixels: smaller visible pieces are not annotated (and are rarely drawn at all)


@dataclass(frozen=True)
class Camera:
    name: str
    yaw_deg: float
    width: int = 640
    height: int = 360
    focal: float = 480.0
    mount_height: float = 1.4
    pitch_deg: float = 2.0
    lateral: float = 0.0  # mount offset from the ego centre line (metres)

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) as (x, y_up, z) -> pixel coords (N, 2) and camera depth (N,)."""
        yaw, pitch = math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        px, py, pz = pts[:, 0] - self.lateral, pts[:, 1] - self.mount_height, pts[:, 2]
        xc = math.cos(yaw) * px - math.sin(yaw) * pz
        zc0 = math.sin(yaw) * px + math.cos(yaw) * pz
        yc = math.cos(pitch) * py + math.sin(pitch) * zc0
        zc = -math.sin(pitch) * py + math.cos(pitch) * zc0
        safe = np.where(np.abs(zc) < 1e-6, 1e-6, zc)
        u = self.width / 2 + self.focal * xc / safe
        v = self.height / 2 - self.focal * yc / safe
        return np.stack([u, v], axis=1), zc

    def depth(self, x: float, z: float) -> float:
        return float(self.project(np.array([[x, 0.0, z]]))[1][0])


def vehicle_cameras(width: int = 640, height: int = 360) -> list[Camera]:
    """The four cameras of one vehicle: front, right, rear and left."""
    return [Camera(name, yaw, width, height, focal=0.75 * width) for name, yaw in CAMERA_YAWS.items()]


@dataclass
class WorldObject:
    object_id: int
    cls: str
    x: float
    z: float
    vx: float = 0.0
    vz: float = 0.0
    heading_deg: float = 0.0  # 0 = facing +z (along the road)
    elevation: float = 0.0  # metres above the ground (traffic lights on poles)
    colour: tuple[float, float, float] = (180.0, 180.0, 180.0)
    outfit: dict[str, tuple[float, float, float]] | None = None  # a person's skin, top and trouser colours
    walking: bool = False  # a person drawn in mid-stride

    def at(self, t: float) -> tuple[float, float]:
        return self.x + self.vx * t, self.z + self.vz * t


@dataclass
class Scenery:
    """Static surroundings: buildings along the road and the light and weather of the scene."""

    buildings: list[tuple[float, float, float, float, tuple[int, int, int]]] = field(default_factory=list)
    sky: tuple[int, int, int] = (170, 200, 230)
    ground: tuple[int, int, int] = (95, 120, 80)
    asphalt: int = 85
    brightness: float = 1.0
    fog_distance: float = 180.0


@dataclass
class World:
    objects: list[WorldObject]
    scenery: Scenery


@dataclass
class RenderedInstance:
    object_id: int
    category: int  # contiguous COCO class index
    mask: np.ndarray  # (H, W) bool, visible part only
    depth: float

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    instances: list[RenderedInstance]
    camera: str
    time_s: float


_PALETTE = [(200, 30, 30), (30, 60, 160), (230, 230, 230), (25, 25, 25), (150, 150, 155), (20, 110, 60),
            (220, 180, 40), (120, 70, 40), (90, 30, 110), (250, 120, 30), (60, 160, 200)]  # fmt: skip


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    base = np.asarray(_PALETTE[rng.integers(len(_PALETTE))], np.float64)
    return tuple(np.clip(base + rng.normal(0, 18, 3), 0, 255))


def random_world(rng: np.random.Generator, *, density: float = 1.0, span: float = 70.0, crowds: bool = False) -> World:
    """Road users scattered around the ego vehicle, with plausible motion for sequences.

    ``crowds`` adds groups of pedestrians on the sidewalks and at crossings; its draws come after
    all others, so worlds without crowds are unchanged by it.
    """
    objects: list[WorldObject] = []

    def add(cls: str, x: float, z: float, **kw: float) -> None:
        objects.append(WorldObject(len(objects) + 1, cls, x, z, colour=_colour(rng), **kw))

    lanes = (-LANE_WIDTH, 0.0, LANE_WIDTH)
    for lane in lanes:
        z = -span + rng.uniform(0, 12)
        while z < span:
            if abs(lane) > 0.1 or abs(z) > 7:
                cls = rng.choice(["car", "car", "car", "car", "truck", "bus"], p=None)
                opposite = lane < 0
                speed = rng.uniform(-3, 3) + (-8.0 if opposite else 0.0)
                add(str(cls), lane + rng.uniform(-0.4, 0.4), z, vz=speed, heading_deg=180.0 if opposite else 0.0)
            z += rng.uniform(9, 26) / density
    for sign in (-1, 1):
        z = -span + rng.uniform(0, 6)
        while z < span:
            r = rng.random()
            x = sign * rng.uniform(SIDEWALK[0] + 0.4, SIDEWALK[1] - 0.3)
            if r < 0.55:
                add("person", x, z, vz=rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.6), heading_deg=90.0 * sign)
            elif r < 0.75:
                bx = sign * (ROAD_HALF - 0.7)
                add("bicycle", bx, z, vz=rng.uniform(3, 6), heading_deg=90.0)
                add("person", bx, z + 0.01, vz=objects[-1].vz, heading_deg=90.0)  # the rider
            elif r < 0.85:
                add("motorcycle", sign * (ROAD_HALF - 0.9), z, vz=rng.uniform(4, 9), heading_deg=90.0)
            else:  # someone crossing the road
                add("person", sign * rng.uniform(0, ROAD_HALF), z, vx=-sign * rng.uniform(0.8, 1.5), heading_deg=0.0)
            z += rng.uniform(5, 16) / density
    for z in np.arange(-span + rng.uniform(0, 30), span, rng.uniform(28, 50)):
        for sign in (-1, 1):
            if rng.random() < 0.7:
                add("traffic light", sign * (ROAD_HALF + 0.6), float(z), elevation=rng.uniform(3.6, 4.8))
    scenery = random_scenery(rng)
    if crowds:
        for _ in range(int(rng.integers(1, 6))):
            sign, z0 = rng.choice([-1.0, 1.0]), rng.uniform(-span / 2, span / 2)
            crossing = rng.random() < 0.3
            for _ in range(int(rng.integers(3, 10))):
                if crossing:  # a group crossing the road
                    x, vx, vz = sign * rng.uniform(-ROAD_HALF, ROAD_HALF), -sign * rng.uniform(0.8, 1.4), 0.0
                else:
                    x, vx, vz = sign * rng.uniform(*SIDEWALK), 0.0, rng.uniform(-1.4, 1.4)
                add("person", float(x), z0 + rng.uniform(-2.5, 2.5), vx=vx, vz=vz, heading_deg=0.0)
    return World(objects=objects, scenery=scenery)


def random_scenery(rng: np.random.Generator) -> Scenery:
    buildings = []
    for sign in (-1, 1):
        z = -250.0
        while z < 250:
            length = rng.uniform(8, 30)
            # the order of the draws defines the data set: keep it when editing
            x = sign * rng.uniform(12, 20)
            height = rng.uniform(5, 25)
            colour = tuple(int(c) for c in rng.uniform(60, 200, 3))
            buildings.append((x, z, length, height, colour))
            z += length + rng.uniform(1, 12)
    day = rng.random()
    sky = (170, 200, 230) if day > 0.3 else (70, 80, 110)
    return Scenery(
        buildings=buildings,
        sky=tuple(int(np.clip(c + rng.normal(0, 15), 0, 255)) for c in sky),
        ground=tuple(int(np.clip(c + rng.normal(0, 15), 0, 255)) for c in (95, 120, 80)),
        asphalt=int(rng.uniform(60, 110)),
        brightness=float(rng.uniform(0.55, 1.25) if day > 0.3 else rng.uniform(0.4, 0.7)),
        fog_distance=float(rng.uniform(90, 300)),
    )


def _ground_poly(cam: Camera, x0: float, x1: float, z0: float, z1: float, near: float = 0.3) -> np.ndarray | None:
    """A ground rectangle projected to pixels, clipped against the camera's near plane."""
    corners = np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]], np.float64)
    uv, depth = cam.project(corners)
    pts: list[np.ndarray] = []
    for i in range(4):
        j = (i + 1) % 4
        if depth[i] >= near:
            pts.append(corners[i])
        if (depth[i] >= near) != (depth[j] >= near):
            t = (near - depth[i]) / (depth[j] - depth[i])
            pts.append(corners[i] + t * (corners[j] - corners[i]))
    if len(pts) < 3:
        return None
    uv, _ = cam.project(np.array(pts))
    return np.round(np.clip(uv, -1e5, 1e5) * 16).astype(np.int32)


def _fill(image: np.ndarray, poly: np.ndarray | None, colour: tuple[int, ...]) -> None:
    if poly is not None:
        cv2.fillPoly(image, [poly], colour, lineType=cv2.LINE_AA, shift=4)


def _draw_background(image: np.ndarray, cam: Camera, world: World) -> None:
    sc = world.scenery
    h = image.shape[0]
    grad = np.linspace(0.8, 1.1, h)[:, None, None]
    image[:] = np.clip(np.asarray(sc.sky, np.float64)[None, None] * grad, 0, 255).astype(np.uint8)
    far = 400.0
    _fill(image, _ground_poly(cam, -far, far, -far, far), sc.ground)
    for sign in (-1, 1):
        _fill(image, _ground_poly(cam, sign * SIDEWALK[0], sign * SIDEWALK[1], -far, far), (150, 150, 145))
    _fill(image, _ground_poly(cam, -ROAD_HALF, ROAD_HALF, -far, far), (sc.asphalt,) * 3)
    # lane markings: solid edges, dashes between lanes
    for x in (-ROAD_HALF + 0.2, ROAD_HALF - 0.2):
        _fill(image, _ground_poly(cam, x - 0.08, x + 0.08, -far, far), (225, 225, 215))
    start = -120.0
    for x in (-LANE_WIDTH / 2, LANE_WIDTH / 2):
        for z in np.arange(start, 120.0, 9.0):
            _fill(image, _ground_poly(cam, x - 0.07, x + 0.07, z, z + 3.0), (230, 230, 220))
    for bx, bz, length, height, colour in sorted(world.scenery.buildings, key=lambda b: -abs(b[0])):
        faces = np.array([[bx, 0, bz], [bx, 0, bz + length], [bx, height, bz + length], [bx, height, bz]], np.float64)
        uv, depth = cam.project(faces)
        if (depth > 0.5).all():
            cv2.fillPoly(image, [np.round(uv * 16).astype(np.int32)], colour, cv2.LINE_AA, 4)


def render(
    world: World, cam: Camera, t: float, rng: np.random.Generator, *, degrade: bool = True, clutter: bool = False
) -> Frame:
    """Render the world at time ``t`` (seconds) from ``cam``; ``clutter`` adds unlabelled trees and bushes."""
    sc = world.scenery
    image = np.zeros((cam.height, cam.width, 3), np.uint8)
    ids = np.zeros((cam.height, cam.width), np.uint16)
    _draw_background(image, cam, world)
    if clutter:
        _draw_clutter(image, cam, rng)
    placed = []
    for obj in world.objects:
        x, z = obj.at(t)
        depth = cam.depth(x, z)
        if depth < 1.0:
            continue
        length, width, height = SIZES[obj.cls]
        # broadside when the line of sight is roughly perpendicular to the heading
        sight = math.degrees(math.atan2(x - cam.lateral, z)) - obj.heading_deg
        side = abs(math.sin(math.radians(sight))) > 0.6 if obj.cls != "person" else False
        extent = length if side else width
        uv, _ = cam.project(np.array([[x, obj.elevation, z]]))
        u, v = float(uv[0, 0]), float(uv[0, 1])
        scale = cam.focal / depth
        w_px, h_px = extent * scale, height * scale
        if u + w_px < 0 or u - w_px > cam.width or v < 0 or v - h_px > cam.height or h_px < 3:
            continue
        placed.append((depth, obj, side, u, v, w_px, h_px))
    placed.sort(key=lambda p: -p[0])
    for i, (depth, obj, side, u, v, w_px, h_px) in enumerate(placed, start=1):
        if obj.cls == "traffic light":  # pole below the housing is scenery, not the instance
            vg = float(cam.project(np.array([[obj.x, 0.0, obj.at(t)[1]]]))[0][0, 1])
            cv2.line(image, (int(u), int(v)), (int(u), int(vg)), (70, 70, 72), max(1, int(0.12 * w_px / 0.35)))
        fog = 1.0 - math.exp(-depth / sc.fog_distance)
        draw_billboard(
            image, ids, i, obj.cls, side, u=u, v=v, width_px=w_px, height_px=h_px,
            colour=obj.colour, fog=fog, fog_colour=sc.sky, mirror=math.cos(math.radians(obj.heading_deg)) < 0,
            outfit=obj.outfit, walking=obj.walking,
        )  # fmt: skip
    instances = []
    for i, (depth, obj, *_rest) in enumerate(placed, start=1):
        mask = ids == i
        if mask.sum() >= MIN_AREA:
            instances.append(RenderedInstance(obj.object_id, CLASS_INDEX[obj.cls], mask, depth))
    if degrade:
        image = degrade_image(image, sc.brightness, rng)
    return Frame(image=image, instances=instances, camera=cam.name, time_s=t)


def degrade_image(image: np.ndarray, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """Lighting, colour cast, sensor noise, occasional blur and a JPEG round trip."""
    img = image.astype(np.float32) * brightness * rng.uniform(0.9, 1.1, 3)[None, None]
    img += rng.normal(0, rng.uniform(2, 8), img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    quality = int(rng.integers(45, 95))
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy() if ok else img


def random_camera(rng: np.random.Generator, width: int = 640, height: int = 360) -> Camera:
    name = str(rng.choice(["front", "front", "front", "rear", "left", "right"]))
    return Camera(
        name,
        CAMERA_YAWS[name] + rng.normal(0, 4),
        width,
        height,
        focal=width * rng.uniform(0.6, 0.95),
        mount_height=rng.uniform(1.1, 1.8),
        pitch_deg=rng.uniform(-1, 6),
        lateral=rng.uniform(-0.4, 0.4),
    )


def synthetic_image(seed: int, index: int, width: int = 640, height: int = 360) -> Frame:
    """Image ``index`` of the set ``seed``: a fresh random world seen from a random camera."""
    rng = np.random.default_rng([seed, index])
    world = random_world(rng, density=rng.uniform(0.6, 1.4))
    cam = random_camera(rng, width, height)
    return render(world, cam, t=float(rng.uniform(0, 5)), rng=rng)


def elevated_camera(rng: np.random.Generator, width: int = 640, height: int = 360) -> Camera:
    """A fixed camera on a pole or a building looking down at the road (traffic and parking-lot views)."""
    name = str(rng.choice(["front", "rear"]))
    return Camera(
        name,
        CAMERA_YAWS[name] + rng.uniform(-35, 35),
        width,
        height,
        focal=width * rng.uniform(0.55, 1.0),
        mount_height=rng.uniform(3.0, 9.0),
        pitch_deg=rng.uniform(8, 30),
        lateral=rng.uniform(-ROAD_HALF, ROAD_HALF),
    )


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth random field in [-1, 1] with features about ``cell`` pixels across."""
    small = rng.uniform(-1, 1, (max(h // cell, 1) + 2, max(w // cell, 1) + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _draw_clutter(image: np.ndarray, cam: Camera, rng: np.random.Generator) -> None:
    """Trees and bushes beside the road: textured, irregular shapes that are not objects."""
    h, w = image.shape[:2]
    horizon = int(np.clip(cam.project(np.array([[0.0, 0.0, 1e4]]))[0][0, 1], 0, h - 1))
    for _ in range(int(rng.integers(2, 14))):
        x = rng.uniform(0, w)
        base = horizon + rng.uniform(0, max(h - horizon, 1) * 0.5)
        size = rng.uniform(0.04, 0.4) * h * (0.5 + (base - horizon) / max(h - horizon, 1))
        layer = np.zeros((h, w), np.uint8)
        if rng.random() < 0.7:  # a tree: trunk and a canopy of overlapping blobs
            cv2.line(image, (int(x), int(base)), (int(x), int(base - size)), tuple(int(c) for c in
                     rng.uniform(40, 90, 3)), max(1, int(size * 0.06)))  # fmt: skip
            centre_y = base - size * rng.uniform(0.9, 1.4)
        else:  # a bush on the ground
            centre_y = base - size * 0.3
        for _ in range(int(rng.integers(6, 25))):
            cx, cy = x + rng.normal(0, size * 0.4), centre_y + rng.normal(0, size * 0.3)
            r = max(1, int(size * rng.uniform(0.15, 0.4)))
            cv2.circle(layer, (int(cx), int(cy)), r, 1, -1)
        inside = layer.astype(bool)
        green = np.array([rng.uniform(30, 110), rng.uniform(60, 150), rng.uniform(20, 90)], np.float32)
        tex = 1.0 + 0.45 * _noise(rng, h, w, max(2, int(size * 0.08)))
        image[inside] = np.clip(green[None] * tex[inside][:, None], 0, 255).astype(np.uint8)


def _texture(frame: Frame, rng: np.random.Generator) -> None:
    """Uneven light over the scene, surface texture, and top-lit shading of every object."""
    h, w = frame.image.shape[:2]
    img = frame.image.astype(np.float32)
    img *= (1.0 + 0.25 * _noise(rng, h, w, int(rng.integers(60, 200))))[..., None]
    img += 14.0 * _noise(rng, h, w, int(rng.integers(2, 6)))[..., None]
    for inst in frame.instances:
        rows = np.flatnonzero(inst.mask.any(axis=1))
        if rows.size < 2:
            continue
        ramp = np.linspace(rng.uniform(1.0, 1.3), rng.uniform(0.6, 0.9), rows[-1] - rows[0] + 1, dtype=np.float32)
        shade = np.ones(h, np.float32)
        shade[rows[0] : rows[-1] + 1] = ramp
        img[inst.mask] *= shade[:, None].repeat(w, 1)[inst.mask][:, None]
    frame.image = np.clip(img, 0, 255).astype(np.uint8)


def _occlude(frame: Frame, rng: np.random.Generator) -> None:
    """Draw unlabelled foreground occluders (poles, signs, hedges) over the scene and cut them from the masks."""
    h, w = frame.image.shape[:2]
    hidden = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(1, 4))):
        cover = np.zeros((h, w), np.uint8)
        x = int(rng.integers(0, w))
        if rng.random() < 0.6:  # a pole, sometimes with a sign on it
            half = int(rng.integers(2, 9))
            cv2.rectangle(cover, (x - half, int(rng.integers(0, h // 2))), (x + half, h), 1, -1)
            if rng.random() < 0.5:
                y, size = int(rng.integers(0, h // 2)), int(rng.integers(10, 40))
                cv2.rectangle(cover, (x - size, y), (x + size, y + size), 1, -1)
        else:  # a hedge or low wall along the bottom
            y = int(h - rng.integers(h // 12, h // 4))
            cv2.rectangle(cover, (x - int(rng.integers(40, w // 2)), y), (x + int(rng.integers(40, w // 2)), h), 1, -1)
        drawn = cover.astype(bool)
        frame.image[drawn] = rng.uniform(20, 200, 3).astype(np.uint8)
        hidden |= drawn
    for inst in frame.instances:
        inst.mask &= ~hidden
    frame.instances = [inst for inst in frame.instances if inst.area >= MIN_AREA]


def training_image(seed: int, index: int, width: int = 640, height: int = 360) -> Frame:
    """A training scene with more variety than :func:`synthetic_image`.

    Denser traffic and crowds, pedestrians in clothes of several colours and in mid-stride, elevated
    fixed cameras as well as vehicle cameras, trees and bushes, uneven light and surface texture, and
    foreground occluders. Evaluation sets keep using :func:`synthetic_image`.
    """
    rng = np.random.default_rng([seed, index, 0x7A1])
    world = random_world(rng, density=rng.uniform(0.6, 2.0), crowds=rng.random() < 0.5)
    dress = np.random.default_rng([seed, index, 0xD5E])  # its own stream: the scene's draws stay as they were
    for obj in world.objects:
        if obj.cls == "person":
            obj.outfit = person_outfit(dress) if dress.random() < 0.9 else None
            obj.walking = bool(dress.random() < 0.5) and abs(obj.vx) + abs(obj.vz) > 0.5
    cam = elevated_camera(rng, width, height) if rng.random() < 0.35 else random_camera(rng, width, height)
    frame = render(world, cam, t=float(rng.uniform(0, 5)), rng=rng, degrade=False, clutter=rng.random() < 0.8)
    if rng.random() < 0.8:
        _texture(frame, rng)
    if rng.random() < 0.35:
        _occlude(frame, rng)
    frame.image = degrade_image(frame.image, world.scenery.brightness, rng)
    return frame


def iter_synthetic_sequence(
    seed: int, *, cameras: list[Camera] | None = None, fps: float = 10.0, seconds: float = 10.0
) -> Iterator[list[Frame]]:
    """The frames of :func:`synthetic_sequence` one time step at a time (memory stays flat)."""
    rng = np.random.default_rng([seed, 0xC0FFEE])
    world = random_world(rng)
    cams = cameras or vehicle_cameras()
    for i in range(round(fps * seconds)):
        yield [render(world, cam, i / fps, rng) for cam in cams]


def synthetic_sequence(
    seed: int, *, cameras: list[Camera] | None = None, fps: float = 10.0, seconds: float = 10.0
) -> list[list[Frame]]:
    """A moving multi-camera sequence of one vehicle: ``frames[i][c]`` is frame i of camera c.

    Object ids are stable over time and across cameras, so the frames carry ground-truth tracks.
    """
    return list(iter_synthetic_sequence(seed, cameras=cameras, fps=fps, seconds=seconds))
