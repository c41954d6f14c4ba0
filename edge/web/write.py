"""The web app's routes that change things: regions in the config, collecting crops, the review queue, training,
accepting.

    PUT    /api/regions/{camera}/{region}             draw or move a region (the config file, then a reload)
    GET    /api/collect                              the collect session and its counters
    POST   /api/collect                              start collecting crops of a region under a label
    DELETE /api/collect                              stop collecting
    GET    /api/crops/{camera}/{region}              the crops by label
    GET    /api/crops/{camera}/{region}/{label}/{file}    one crop (JPEG)
    DELETE /api/crops/{camera}/{region}/{label}/{file}    delete it
    PATCH  /api/crops/{camera}/{region}/{label}/{file}    move it to another label
    GET    /api/review/{camera}/{region}             the region's review items, newest first, each with its result
    GET    /api/review/{camera}/{region}/{file}      one item's crop (JPEG)
    PATCH  /api/review/{camera}/{region}/{file}      assign it to a label: it moves into the region's crops
    DELETE /api/review/{camera}/{region}/{file}      discard it
    GET    /api/train                                the training's progress and result
    POST   /api/train                                train the region's crops (edge.learn.head in a worker process)
    POST   /api/accept                               keep the trained file as the next version and use it
    GET    /api/models/{camera}/{region}             the accepted versions and the one in use
    PUT    /api/models/{camera}/{region}             use another version, or the base model (rollback)

Bodies are JSON (Content-Type: application/json), at most MAX_BODY bytes, validated by pydantic (unknown keys
refused); names are letters, digits, _ and - (edge.learn.collect.NAME). The token and the same-origin check are
the Guard's (web_app); errors answer {"error": "one line"}.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from edge.errors import EdgerecError
from edge.learn.collect import CROP_FILE, CollectOptions, check_crop_file, check_name
from edge.live.regions import box_problem
from edge.web.options import ConfigStore
from edge.web.state import Served
from edge.web.trainer import Busy, Place, keep_candidate, version_path, versions

MAX_BODY = 4096
"""Bytes a request body may have (the largest one, a collect start, needs about 150)."""
JSON = "application/json"
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True, frozen=True)


class RegionPut(Body):
    """PUT /api/regions/{camera}/{region}."""

    model_config = ConfigDict(title="RegionPut")
    box: list[float] = Field(min_length=4, max_length=4)
    """x, y, w, h as fractions of the frame."""

    @field_validator("box", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value] \
            if isinstance(value, list) else value

    @field_validator("box")
    @classmethod
    def _inside(cls, value: list[float]) -> list[float]:
        problem = box_problem(tuple(value))
        if problem:
            raise ValueError(problem)
        return value


class CollectStart(Body):
    """POST /api/collect."""

    model_config = ConfigDict(title="CollectStart")
    camera: Name
    region: Name
    label: Name
    """The class the crops are saved under."""
    every_s: float = Field(1.0, ge=0, le=3600)
    """A crop every this many seconds; 0: only on motion."""
    on_motion: bool = False
    """Also a crop when motion touches the region (where the camera has a motion detector)."""


class Relabel(Body):
    """PATCH /api/crops/{camera}/{region}/{label}/{file}."""

    model_config = ConfigDict(title="Relabel")
    label: Name


class Assign(Body):
    """PATCH /api/review/{camera}/{region}/{file}."""

    model_config = ConfigDict(title="Assign")
    label: Name
    """The label the crop is taught under: one the region has crops of, or a new one (not "unknown")."""


class PlaceBody(Body):
    """POST /api/train and /api/accept: a camera's region."""

    model_config = ConfigDict(title="Place")
    camera: Name
    region: Name


class VersionPut(Body):
    """PUT /api/models/{camera}/{region}."""

    model_config = ConfigDict(title="VersionPut")
    version: int | None = Field(ge=1)
    """An accepted version's number; null: the base model (the region's model key removed)."""


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def problem(code: int, message: str) -> Response:
    return Response(json.dumps({"error": message}).encode(), code, media_type=JSON)


def ok(payload: dict[str, Any], code: int = 200) -> Response:
    return Response(json.dumps(payload).encode(), code, media_type=JSON)


async def read_body(request: Request, model: type[Body]) -> Any:
    """The request's JSON body as `model`, or Refused (415 not JSON, 413 too long, 422 invalid)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != JSON:
        raise Refused(415, f"send JSON (Content-Type: {JSON}), got {kind[:60] or 'no Content-Type'!r}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Refused(413, f"request body over {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        return model.model_validate_json(b"".join(chunks))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Refused(422, f"{where}: {first['msg']}") from None


def guarded(handler: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Errors as {"error": ...}: Refused with its code, Busy 409, other EdgerecErrors 400."""

    async def endpoint(request: Request) -> Response:
        try:
            for key in ("camera", "region", "label"):
                if key in request.path_params:
                    check_name(request.path_params[key], key)
            if "file" in request.path_params:
                check_crop_file(request.path_params["file"])
            return await handler(request)
        except Refused as refused:
            return problem(refused.code, refused.message)
        except Busy as busy:
            return problem(409, str(busy))
        except EdgerecError as error:
            return problem(400, str(error))

    endpoint.__doc__ = handler.__doc__
    endpoint.__name__ = handler.__name__
    return endpoint


def write_routes(sink: Served) -> list[Route]:
    """The routes above, answering from `sink` (its config file, collector, trainer, state directory)."""

    def config() -> ConfigStore:
        if sink.config is None:
            raise Refused(409, "this run has no config file to change (start it with --config FILE)")
        return sink.config

    def place(camera: str, region: str) -> Place:
        if camera not in sink.views:
            raise Refused(404, f"no camera {camera!r}; cameras: {' '.join(sink.views)}")
        return Place.of(sink.state, camera, region)

    def reload() -> bool:
        if sink.request_reload is None:
            return False
        sink.request_reload()
        return True

    async def put_region(request: Request) -> Response:
        """Draw or move a region: saved to the config file (a backup kept as FILE.bak), then a reload."""
        camera, region = request.path_params["camera"], request.path_params["region"]
        body = await read_body(request, RegionPut)
        place(camera, region)
        store = config()
        await run_in_threadpool(store.set_region, camera, region, body.box)
        return ok({"camera": camera, "region": region, "box": body.box, "config": store.path, "reloading": reload()})

    async def collect_status(_: Request) -> Response:
        """The collect session (camera, region, label) and its counters."""
        return ok(sink.collector.status())

    async def collect_start(request: Request) -> Response:
        """Start collecting crops of a region under a label (replaces a running session)."""
        body = await read_body(request, CollectStart)
        place(body.camera, body.region)
        if body.region not in running_regions(sink, body.camera):
            raise Refused(409, f"camera {body.camera} has no region {body.region!r} running; running: "
                          f"{', '.join(running_regions(sink, body.camera)) or 'none yet'} (a drawn region runs "
                          "once the config has reloaded)")
        sink.collector.start(CollectOptions(body.camera, body.region, body.label, body.every_s, body.on_motion))
        return ok(sink.collector.status(), 201)

    async def collect_stop(_: Request) -> Response:
        """Stop collecting."""
        sink.collector.stop()
        return ok(sink.collector.status())

    async def crops(request: Request) -> Response:
        """The region's crops: {"labels": {label: [file, ...]}}."""
        camera, region = request.path_params["camera"], request.path_params["region"]
        place(camera, region)
        return ok({"labels": await run_in_threadpool(sink.collector.listing, camera, region)})

    async def crop(request: Request) -> Response:
        """One crop, as JPEG."""
        path = sink.collector.crop_path(*crop_params(request))
        if not path.is_file():
            raise Refused(404, "no such crop")
        return FileResponse(path, media_type="image/jpeg")

    async def delete_crop(request: Request) -> Response:
        """Delete one crop."""
        await run_in_threadpool(sink.collector.delete, *crop_params(request))
        return ok({"deleted": request.path_params["file"]})

    async def relabel_crop(request: Request) -> Response:
        """Move one crop to another label."""
        body = await read_body(request, Relabel)
        await run_in_threadpool(sink.collector.relabel, *crop_params(request), body.label)
        return ok({"file": request.path_params["file"], "label": body.label})

    async def review_items(request: Request) -> Response:
        """The region's review items, newest first: {"items": [{file, label, score, novelty, reason, time, ...}]}."""
        camera, region = request.path_params["camera"], request.path_params["region"]
        place(camera, region)
        return ok({"items": await run_in_threadpool(sink.review.items, camera, region)})

    async def review_crop(request: Request) -> Response:
        """One review item's crop, as JPEG."""
        path = sink.review.crop_path(*review_params(request))
        if not path.is_file():
            raise Refused(404, "no such review item")
        return FileResponse(path, media_type="image/jpeg")

    async def assign(request: Request) -> Response:
        """Assign a review item to a label: its crop moves into the region's crops, for the next training."""
        body = await read_body(request, Assign)
        camera, region, name = review_params(request)
        place(camera, region)
        moved = await run_in_threadpool(sink.review.assign, camera, region, name, body.label,
                                        sink.collector.data_dir(camera, region))
        return ok({"file": moved.name, "label": body.label})

    async def discard(request: Request) -> Response:
        """Discard a review item."""
        camera, region, name = review_params(request)
        await run_in_threadpool(sink.review.discard, camera, region, name)
        return ok({"discarded": name})

    async def train_status(_: Request) -> Response:
        """The training's state (idle, running, done, failed), progress and result with its 95% interval."""
        return ok(sink.trainer.status())

    async def train(request: Request) -> Response:
        """Train a new model for the region from its crops, in a worker process (one at a time)."""
        body = await read_body(request, PlaceBody)
        where = place(body.camera, body.region)
        base = None if sink.config is None else await run_in_threadpool(sink.config.model_path)
        sink.trainer.start(where, base)
        return ok(sink.trainer.status(), 202)

    async def accept(request: Request) -> Response:
        """Keep the trained file as the region's next version, set it in the config, reload."""
        body = await read_body(request, PlaceBody)
        where, store = place(body.camera, body.region), config()
        if sink.trainer.status()["state"] == "running":
            raise Refused(409, "a training is running; accept when it is done")
        kept = await run_in_threadpool(keep_candidate, where)
        await run_in_threadpool(store.set_region_model, body.camera, body.region, str(kept))
        return ok({"model": str(kept), "version": int(kept.stem[1:]), "reloading": reload()})

    async def models(request: Request) -> Response:
        """The region's accepted versions (oldest first) and the model file it uses now."""
        camera, region = request.path_params["camera"], request.path_params["region"]
        where = place(camera, region)
        current = sink.config.region_model(camera, region) if sink.config is not None else ""
        return ok({"current": current, "versions": await run_in_threadpool(versions, where)})

    async def choose_model(request: Request) -> Response:
        """Use an accepted version, or the base model (version null): the config set, then a reload."""
        camera, region = request.path_params["camera"], request.path_params["region"]
        body = await read_body(request, VersionPut)
        where, store = place(camera, region), config()
        model = version_path(where, body.version)
        await run_in_threadpool(store.set_region_model, camera, region, model)
        return ok({"model": model, "version": body.version, "reloading": reload()})

    crop_path = "/api/crops/{camera}/{region}/{label}/{file}"
    item_path = "/api/review/{camera}/{region}/{file}"
    return [
        Route("/api/regions/{camera}/{region}", guarded(put_region), methods=["PUT"]),
        Route("/api/collect", guarded(collect_status), methods=["GET"]),
        Route("/api/collect", guarded(collect_start), methods=["POST"]),
        Route("/api/collect", guarded(collect_stop), methods=["DELETE"]),
        Route("/api/crops/{camera}/{region}", guarded(crops), methods=["GET"]),
        Route(crop_path, guarded(crop), methods=["GET"]),
        Route(crop_path, guarded(delete_crop), methods=["DELETE"]),
        Route(crop_path, guarded(relabel_crop), methods=["PATCH"]),
        Route("/api/review/{camera}/{region}", guarded(review_items), methods=["GET"]),
        Route(item_path, guarded(review_crop), methods=["GET"]),
        Route(item_path, guarded(assign), methods=["PATCH"]),
        Route(item_path, guarded(discard), methods=["DELETE"]),
        Route("/api/train", guarded(train_status), methods=["GET"]),
        Route("/api/train", guarded(train), methods=["POST"]),
        Route("/api/accept", guarded(accept), methods=["POST"]),
        Route("/api/models/{camera}/{region}", guarded(models), methods=["GET"]),
        Route("/api/models/{camera}/{region}", guarded(choose_model), methods=["PUT"]),
    ]


def crop_params(request: Request) -> tuple[str, str, str, str]:
    params = request.path_params
    return params["camera"], params["region"], params["label"], params["file"]


def review_params(request: Request) -> tuple[str, str, str]:
    params = request.path_params
    return params["camera"], params["region"], params["file"]


def running_regions(sink: Served, camera: str) -> list[str]:
    last = sink.views[camera].stats.snapshot().last
    return [r.region for r in last.regions] if last is not None else []


# --- OpenAPI: request bodies and answers of the routes above ---

ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
REQUESTS: dict[tuple[str, str], type[Body]] = {
    ("put", "/api/regions/{camera}/{region}"): RegionPut,
    ("post", "/api/collect"): CollectStart,
    ("patch", "/api/crops/{camera}/{region}/{label}/{file}"): Relabel,
    ("patch", "/api/review/{camera}/{region}/{file}"): Assign,
    ("post", "/api/train"): PlaceBody,
    ("post", "/api/accept"): PlaceBody,
    ("put", "/api/models/{camera}/{region}"): VersionPut,
}
SUCCESS = {("post", "/api/collect"): "201", ("post", "/api/train"): "202"}
IMAGES = {("get", "/api/crops/{camera}/{region}/{label}/{file}"), ("get", "/api/review/{camera}/{region}/{file}")}


def openapi_operation(method: str, path: str, summary: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI operation of one write route; request schemas are added to `schemas`."""
    code = SUCCESS.get((method, path), "200")
    body = {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}} if (method, path) in IMAGES \
        else {JSON: {"schema": {"type": "object"}}}
    answers = {code: {"description": "Done.", "content": body},
               "4XX": {"description": "Refused: 400 bad value, 401 no token, 403 cross-origin, 404 unknown camera "
                       "or crop, 409 no config file / busy, 413 body too long, 415 not JSON, 422 invalid body",
                       "content": {JSON: {"schema": ERROR}}}}
    operation: dict[str, Any] = {"summary": summary, "responses": answers}
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    if names:
        operation["parameters"] = [{"name": name, "in": "path", "required": True, "schema": {
            "type": "string", "pattern": CROP_FILE.pattern if name == "file" else r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"}}
            for name in names]  # fmt: skip
    request = REQUESTS.get((method, path))
    if request is not None:
        schema = request.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[schema["title"]] = schema
        operation["requestBody"] = {"required": True, "content": {JSON: {
            "schema": {"$ref": f"#/components/schemas/{schema['title']}"}}}}
    return operation
