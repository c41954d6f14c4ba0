"""Changes to the config file the service runs from, made by the web app: a region's box, a region's model.

Each change reads the file, edits the parsed tables, writes them back as TOML, checks that the new text
loads with edge.app.config (a file that would not load is never written), keeps the previous file as
FILE.bak and replaces the file atomically (temp file + os.replace). The TOML is written by `dumps` below,
a small writer for the tables edgerec has (scalars, arrays of scalars, tables, arrays of tables): the values
and their order are kept, comments are not (the .bak keeps them).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.app.config import load_config, parse_config, toml_value
from edge.errors import EdgerecError
from edge.files import atomic_path
from edge.live.camera import DEFAULT_CAMERA

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HEADER = ("# edgerec configuration, last changed from the web page (the file before that change: {backup});\n"
          "# check it with `edgerec check-config FILE`.\n")


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

    def change(regions: list[dict[str, Any]]) -> None:
        for region in regions:
            if region.get("name") == name:
                region["box"] = [float(v) for v in box]
                return
        regions.append({"name": name, "box": [float(v) for v in box]})

    edit_regions(path, camera, change)


def set_region_model(path: str | Path, camera: str, name: str, model: str) -> None:
    """Set region `name`'s model file ("" removes the key: the region takes [model] path again)."""

    def change(regions: list[dict[str, Any]]) -> None:
        for region in regions:
            if region.get("name") == name:
                if model:
                    region["model"] = model
                else:
                    region.pop("model", None)
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


def edit_regions(path: str | Path, camera: str, change: Any) -> None:
    """Read `path`, let `change(regions)` edit `camera`'s list of region tables, check and write it back."""
    path = Path(path)
    data = read(path)
    change(_regions(data, camera, create=True))
    write(path, data)


def read(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise EdgerecError(f"{path}: cannot read it to change it: {error}") from None


def write(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` to `path` if it loads as a config: the old file kept as PATH.bak, the new one atomic."""
    backup = path.with_name(path.name + ".bak")
    text = HEADER.format(backup=backup.name) + dumps(data)
    parse_config(tomllib.loads(text), origin=f"{path} (as it would be written; left unchanged)")
    try:
        with atomic_path(backup) as tmp:
            shutil.copyfile(path, tmp)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as error:
        raise EdgerecError(f"{path}: cannot write it: {error.strerror or error} (under systemd the unit or a drop-in "
                           "keeps the folder read-only; the shipped unit has ReadWritePaths=/etc/edgerec)") from None


def _regions(data: dict[str, Any], camera: str, create: bool) -> list[dict[str, Any]]:
    """The list of region tables of `camera`: [[regions]] for the one camera of [source], else its
    [[cameras.regions]]."""
    cameras = data.get("cameras")
    if not cameras:
        if camera != DEFAULT_CAMERA:
            raise EdgerecError(f"no camera {camera!r} in the config; valid: {DEFAULT_CAMERA}")
        return data.setdefault("regions", []) if create else data.get("regions", [])
    for table in cameras:
        if table.get("name") == camera:
            return table.setdefault("regions", []) if create else table.get("regions", [])
    raise EdgerecError(f"no camera {camera!r} in the config; valid: {', '.join(str(c.get('name')) for c in cameras)}")


# --- a small TOML writer ---------------------------------------------------------------------------


def dumps(data: Mapping[str, Any]) -> str:
    """`data` (as tomllib parses it: no dates) as TOML: top-level keys first, then tables and arrays of tables."""
    return _table(data, []).lstrip("\n")


def _table(data: Mapping[str, Any], path: list[str]) -> str:
    plain = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    lines = [f"{_key(k)} = {_value(v)}\n" for k, v in plain.items()]
    out = "".join(lines)
    for key, value in data.items():
        if _is_table(value):
            out += f"\n[{_dotted([*path, key])}]\n" + _table(value, [*path, key]).lstrip("\n")
        elif _is_table_array(value):
            for item in value:
                out += f"\n[[{_dotted([*path, key])}]]\n" + _table(item, [*path, key]).lstrip("\n")
    return out


def _is_table(value: object) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _dotted(path: list[str]) -> str:
    return ".".join(_key(part) for part in path)


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else _value(key)


def _value(value: object) -> str:

    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (bool, int, float, str)):
        return toml_value(value)
    raise EdgerecError(f"cannot write {type(value).__name__} {value!r} as TOML; valid: numbers, text, true/false")
