"""scripts/data/make_photoset.py on a tiny fake Tux Paint stamps tree and fake GCompris resource files."""

from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "data" / "make_photoset.py"
spec = importlib.util.spec_from_file_location("make_photoset", SCRIPT)
ps = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = ps
spec.loader.exec_module(ps)

RED = (0, 0, 255)


def stamp(path: Path, height: int = 40, width: int = 20) -> None:
    """A red opaque rectangle of height x width in the middle of a larger transparent PNG."""
    image = np.zeros((height + 30, width + 10, 4), np.uint8)
    image[10 : 10 + height, 5 : 5 + width] = (*RED, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def make_rcc(files: dict[str, bytes], compressed: frozenset[str] = frozenset()) -> bytes:
    """A version-3 Qt resource file holding FILES (path -> content), laid out as Qt's rcc writes it."""
    tree: dict = {}
    for path, content in files.items():
        *folders, name = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = (path, content)
    names, data, nodes = bytearray(), bytearray(), [b""]

    def add_name(name: str) -> int:
        offset = len(names)
        names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))
        return offset

    def add_children(index: int, name_offset: int, children: dict) -> None:
        first = len(nodes)
        nodes.extend([b""] * len(children))
        nodes[index] = struct.pack(">IHII", name_offset, 2, len(children), first) + bytes(8)
        for position, (name, child) in enumerate(children.items()):
            if isinstance(child, dict):
                add_children(first + position, add_name(name), child)
                continue
            path, content = child
            flags = 1 if path in compressed else 0
            blob = struct.pack(">I", len(content)) + zlib.compress(content) if flags else content
            nodes[first + position] = struct.pack(">IHHHI", add_name(name), flags, 0, 0, len(data)) + bytes(8)
            data.extend(struct.pack(">I", len(blob)) + blob)

    add_children(0, 0, tree)
    header = 24
    tree_at, data_at = header, header + 22 * len(nodes)
    names_at = data_at + len(data)
    return b"qres" + struct.pack(">IIIII", 3, tree_at, data_at, names_at, 0) + b"".join(nodes) + data + names


def webp(colour: tuple[int, int, int]) -> bytes:
    return cv2.imencode(".webp", np.full((24, 32, 3), colour, np.uint8))[1].tobytes()


def fake_packages(root: Path) -> None:
    """Both packages' folders under ROOT as dpkg-deb -x leaves them: two photos per class and every left-out one."""
    stamps = root / ps.TUX_DIR
    for folders in ps.TUX.values():
        for folder in folders:
            stamp(stamps / folder / "a.png")
            stamp(stamps / folder / "sub" / "b.png")
            stamp(stamps / folder / "cartoon" / "c.png")
    for relative in ps.TUX_LEFT_OUT:
        stamp(stamps / relative)
    by_rcc: dict[str, dict[str, bytes]] = {}
    for name, sources in ps.GCOMPRIS.items():
        rcc, folder, names = sources[0]
        photo = f"{names[0]}.webp" if names else f"{name}1.webp"
        inside = by_rcc.setdefault(rcc, {})
        inside[f"{ps.ACTIVITIES}{folder}/{photo}"] = webp((0, 200, 0))
        inside[f"{ps.ACTIVITIES}{folder}/README"] = b"License: CC0-1.0"
        if names:
            inside[f"{ps.ACTIVITIES}{folder}/unlisted_animal.webp"] = webp((9, 9, 9))
    for relative in ps.GCOMPRIS_LEFT_OUT:
        by_rcc.setdefault("explore_monuments.rcc", {})[f"{ps.ACTIVITIES}{relative}"] = webp((1, 2, 3))
    for rcc, _ in ps.ANIMAL_FOLDERS:
        by_rcc.setdefault(rcc, {})
    (root / ps.GCOMPRIS_DIR).mkdir(parents=True)
    for rcc, inside in by_rcc.items():
        (root / ps.GCOMPRIS_DIR / rcc).write_bytes(make_rcc(inside, compressed=frozenset(list(inside)[:1])))


def test_reads_every_file_of_a_qt_resource_file_compressed_or_not(tmp_path: Path) -> None:
    files = {"a/b/c.webp": b"plain bytes", "a/d.txt": b"squeezed " * 50, "e": b""}
    (tmp_path / "x.rcc").write_bytes(make_rcc(files, compressed=frozenset({"a/d.txt"})))

    assert ps.read_rcc(tmp_path / "x.rcc") == files


def test_a_damaged_resource_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.rcc").write_bytes(make_rcc({"a/b.webp": b"x"})[:30])
    (tmp_path / "y.rcc").write_bytes(b"PK\x03\x04 a zip file")

    with pytest.raises(ps.PhotosetError, match=r"x\.rcc: damaged Qt resource file"):
        ps.read_rcc(tmp_path / "x.rcc")
    with pytest.raises(ps.PhotosetError, match=r"y\.rcc: not a Qt resource file"):
        ps.read_rcc(tmp_path / "y.rcc")


def test_builds_one_folder_per_class_from_both_packages_without_left_out_photos(tmp_path: Path) -> None:
    fake_packages(tmp_path / "debs")
    result = ps.build(ps.PhotosetOptions(source=tmp_path / "debs", out=tmp_path / "out", size=64))

    assert result.counts == {"bird": 3, "mammal": 3, "fish": 3, "tool": 3, "monument": 1}
    assert (result.from_tux, result.from_gcompris) == (8, 5)
    assert sorted(p.name for p in (tmp_path / "out" / "fish").iterdir()) == [
        "gc_categorization_images_fishes_fish1.webp", "tux_a.jpg", "tux_sub_b.jpg"]
    assert [p.name for p in (tmp_path / "out" / "monument").iterdir()] == [
        "gc_categorization_images_monuments_monument1.webp"]
    bird = cv2.imread(str(tmp_path / "out" / "bird" / "gc_erase_gosling.webp"))
    assert bird.shape == (24, 32, 3)
    np.testing.assert_allclose(bird[12, 16], (0, 200, 0), atol=8)


def test_stamp_is_cropped_scaled_and_centred_on_white(tmp_path: Path) -> None:
    fake_packages(tmp_path)
    ps.build(ps.PhotosetOptions(source=tmp_path, out=tmp_path / "out", size=100, margin=0.1))
    image = cv2.imread(str(tmp_path / "out" / "tool" / "tux_a.jpg"))

    assert image.shape == (100, 100, 3)
    # The 40x20 opaque part fills the 80-pixel inner height: rows 10..89, columns 30..69.
    np.testing.assert_allclose(image[50, 50], RED, atol=12)
    np.testing.assert_allclose(image[12, 50], RED, atol=12)
    np.testing.assert_allclose(image[50, 10], (255, 255, 255), atol=12)
    np.testing.assert_allclose(image[5, 50], (255, 255, 255), atol=12)


def test_refuses_existing_class_folders_unless_overwrite(tmp_path: Path) -> None:
    fake_packages(tmp_path / "debs")
    stale = tmp_path / "out" / "bird" / "old.jpg"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    options = ps.PhotosetOptions(source=tmp_path / "debs", out=tmp_path / "out", size=64)

    with pytest.raises(ps.PhotosetError, match="pass --overwrite"):
        ps.build(options)
    ps.build(ps.PhotosetOptions(source=options.source, out=options.out, size=64, overwrite=True))
    assert not stale.exists()


@pytest.mark.parametrize("missing", ["tuxpaint-stamps-default", "gcompris-qt-data"])
def test_main_names_the_missing_package_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    fake_packages(tmp_path / "debs")
    gone = ps.TUX_DIR if missing.startswith("tux") else ps.GCOMPRIS_DIR
    (tmp_path / "debs" / gone).rename(tmp_path / "elsewhere")

    code = ps.main(["--source", str(tmp_path / "debs"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"make_photoset: error: no {tmp_path / 'debs' / gone}: install the Debian package {missing}")
    assert err.count("\n") == 1
