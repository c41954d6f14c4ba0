"""Changes to the config file the service runs from, made by the web app: a region's box, a region's model.

Each change parses the file with tomlkit (which keeps comments, blank lines, key order and the quoting the
user chose), edits only the keys it changes, checks that the new text loads with edge.app.config (a file that
would not load is never written), keeps the previous file as FILE.bak and replaces the file atomically (temp
file + os.replace). A diff of the old and the new text shows the changed keys and nothing else.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Array, Table
from tomlkit.toml_document import TOMLDocument

from edge.app.config import load_config, parse_config
from edge.errors import EdgerecError
from edge.files import atomic_path
from edge.live.camera import DEFAULT_CAMERA

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Regions = AoT | Array
"""A camera's regions as the file has them: [[regions]] tables, or an inline array `regions = [{...}, ...]`."""


@dataclass(frozen=True)
class TomlConfig:
    """The config file a run was started with, as the web page changes it (edge.web.options.ConfigStore)."""

    path: str

    def set_region(self, camera: str, region: str, box: Sequence[float]) -> None:
        set_region(self.path, camera, region, box)

    def set_region_model(self, camera: str, region: str, model: str) -> None:
        set_region_model(self.path, camera, region, model)

    def region_model(self, camera: str, region: str) -> str:
        return region_model(self.path, camera, region)

    def model_path(self) -> str | None:
        return load_config(self.path).model.path or None


def set_region(path: str | Path, camera: str, name: str, box: Sequence[float]) -> None:
    """Add region `name` to `camera` with `box`, or move it there if it exists (its other keys kept)."""

    def change(regions: Regions) -> None:
        numbers = [float(v) for v in box]
        for region in regions:
            if region.get("name") == name:
                region["box"] = numbers
                return
        regions.append(new_region(regions, name, numbers))

    edit_regions(path, camera, change)


def set_region_model(path: str | Path, camera: str, name: str, model: str) -> None:
    """Set region `name`'s model file ("" removes the key: the region takes [model] path again)."""

    def change(regions: Regions) -> None:
        for region in regions:
            if region.get("name") == name:
                if model:
                    region["model"] = model
                else:
                    region.pop("model", None)  # tomlkit: the line goes, its neighbours stay
                return
        raise EdgerecError(f"camera {camera}: no region {name!r} in the config; valid: "
                           + (", ".join(str(r.get("name")) for r in regions) or "none (draw one first)"))

    edit_regions(path, camera, change)


def region_model(path: str | Path, camera: str, name: str) -> str:
    """The model file region `name` of `camera` names in the file ("" when it names none)."""
    for region in _regions(read(path), camera, create=False):
        if region.get("name") == name:
            return str(region.get("model", ""))
    return ""


def edit_regions(path: str | Path, camera: str, change: Callable[[Regions], None]) -> None:
    """Read `path`, let `change(regions)` edit `camera`'s regions in place, check and write it back."""
    path = Path(path)
    document = read(path)
    change(_regions(document, camera, create=True))
    write(path, document)


def read(path: str | Path) -> TOMLDocument:
    """`path` as a tomlkit document: its values with its comments and layout."""
    try:
        return tomlkit.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TOMLKitError) as error:
        raise EdgerecError(f"{path}: cannot read it to change it: {error}") from None


def write(path: Path, document: TOMLDocument) -> None:
    """Write `document` to `path` if it loads as a config: the old file kept as PATH.bak, the new one atomic."""
    backup = path.with_name(path.name + ".bak")
    text = tomlkit.dumps(document)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:  # tomlkit wrote what it cannot read back: never seen, never written
        raise EdgerecError(f"{path} (as it would be written; left unchanged): not TOML: {error}") from None
    parse_config(data, origin=f"{path} (as it would be written; left unchanged)")
    try:
        with atomic_path(backup) as tmp:
            shutil.copyfile(path, tmp)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as error:
        raise EdgerecError(f"{path}: cannot write it: {error.strerror or error} (under systemd the unit or a drop-in "
                           "keeps the folder read-only; the shipped unit has ReadWritePaths=/etc/edgerec)") from None


def new_region(regions: Regions, name: str, box: list[float]) -> Any:
    """A region to append: a [[regions]] table (a blank line after it) or, in an inline array, an inline table."""
    if isinstance(regions, Array):
        return {"name": name, "box": box}
    table = tomlkit.table()
    table.add("name", name)
    table.add("box", box)
    table.add(tomlkit.nl())
    return table


def _regions(document: TOMLDocument, camera: str, create: bool) -> Regions:
    """The regions of `camera`: [[regions]] for the one camera of [source], else its [[cameras.regions]]; an
    empty [[regions]] list is added when `create` and the camera has none."""
    cameras = document.get("cameras")
    if not cameras:
        if camera != DEFAULT_CAMERA:
            raise EdgerecError(f"no camera {camera!r} in the config; valid: {DEFAULT_CAMERA}")
        return _table_regions(document, create)
    for table in cameras:
        if table.get("name") == camera:
            return _table_regions(table, create)
    raise EdgerecError(f"no camera {camera!r} in the config; valid: {', '.join(str(c.get('name')) for c in cameras)}")


def _table_regions(table: TOMLDocument | Table, create: bool) -> Regions:
    if "regions" not in table:
        if not create:
            return tomlkit.aot()
        table.append("regions", tomlkit.aot())
    return table["regions"]
