"""The HTTP side of the ``web`` node: an aiohttp application that serves the interactive page,
MJPEG video, a WebSocket of state and a small JSON API, with Jupyter-style access control.

No ROS here: the application talks to a :class:`Backend` (the web node implements it with ROS
service and action calls), so routes stay thin and the request checks and security rules can
be read and tested on their own.

Routes (all behind :class:`Guard`)::

    GET  /                 the page (index.html; app.js and style.css under /static/)
    GET  /stream           MJPEG (multipart/x-mixed-replace) of the newest camera frame;
                           query: fps (1..max_fps), width (16..max_width), quality (10..95)
    GET  /snapshot         one JPEG of the newest frame (query: width, quality)
    GET  /ws               WebSocket: the state as JSON, pushed on change at <= state_rate Hz
    GET  /api/state        the same state once
    POST /api/collect      {"label": str}   -> collect (label: one of the task's classes)
    POST /api/train        {"epochs": int, "start": "auto"|"continue"|"fresh"}
                                            -> a train goal (epochs 1..10000; the trainer's
                                               max_epochs may refuse more): train more from the
                                               current model, or start over
    POST /api/train/cancel {}               -> cancel the goal this page (node) sent
    POST /api/camera       {"source": str}  -> the camera's ``source`` parameter; only one of
                                               the web node's ``camera_sources``
    POST /api/gesture      {"threshold": float, "smoothing": float}
                                            -> the classifier's gesture_threshold ([0, 1]) and
                                               gesture_smoothing ([0, 0.99]); its refusal is a
                                               409 with the reason
    POST /api/record/start {"label": str}   -> hold to record: the collector saves new frames
    POST /api/record/stop  {}                  until stop (or its own limits)
    POST /api/delete       {"id": str}      -> delete_samples of one sample shown on the page
    POST /api/undo         {"label": str}   -> undo_collect of the newest sample of a class
    POST /api/restore      {}               -> restore_samples of the last delete / undo
    POST /api/evaluate     {}               -> the evaluate action on the current model
    POST /api/models/select {"model_id": str} -> select_model (one of the ``models`` list)
    GET  /thumb/{id}       a small JPEG of a sample shown on the page (ids are opaque; only
                           samples the collector reported can be shown)

Every POST takes a JSON object of at most :data:`MAX_BODY` bytes with exactly the listed
fields; anything else is answered 4xx ``{"error": reason}`` before the backend sees it.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from .gestures import DebounceConfig
from .imaging import ImageFormatError, image_to_array

__all__ = ['WebConfig', 'Backend', 'BackendError', 'Signal', 'FrameHub', 'Guard',
           'RequestError', 'ASSETS', 'MAX_BODY', 'is_loopback', 'effective_token', 'make_app',
           'read_assets', 'encode_jpeg', 'parse_body']

LOG = logging.getLogger(__name__)

#: Largest request body accepted, bytes (the API's bodies are a few dozen bytes).
MAX_BODY = 4096
#: Largest WebSocket message accepted from a page, bytes (the page sends none).
MAX_WS_MESSAGE = 1024
#: The page's files (name -> content type); nothing else is ever read from disk.
ASSETS = {'index.html': 'text/html', 'app.js': 'text/javascript', 'style.css': 'text/css'}
COOKIE = 'gc_token'
#: The page's names of Train.Goal.start (train more from the current model, or start over).
TRAIN_STARTS = ('auto', 'continue', 'fresh')
#: Sent with every answer: no inline script, nothing from elsewhere, no framing, no sniffing.
SECURITY_HEADERS = {
    'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data: blob:; connect-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
}


@dataclass(frozen=True)
class WebConfig:
    """Settings of the HTTP side (the web node's parameters).

    Attributes:
        host, port: address to bind; port 0 picks a free one (the node logs the URL).
        token: token every request must carry; '' = none (allowed on loopback only).
        max_fps: most video frames per second sent to one viewer, > 0.
        max_width: frames wider than this (px) are scaled down, aspect kept, before encoding.
        jpeg_quality: default JPEG quality, 10..95.
        state_rate: most state pushes per second to one page, > 0.
        max_viewers: most simultaneous video streams; more are answered 503.
        camera_sources: the camera sources the page may switch to; nothing else is passed on.
    """

    host: str = '127.0.0.1'
    port: int = 8080
    token: str = ''
    max_fps: float = 30.0
    max_width: int = 640
    jpeg_quality: int = 80
    state_rate: float = 30.0
    max_viewers: int = 4
    camera_sources: tuple[str, ...] = ()


class BackendError(Exception):
    """A backend call that failed; ``status`` is the HTTP status to answer (409 refused or
    busy, 503 a node is not available, 504 no answer in time)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


class Backend(Protocol):
    """What the page can do; the web node implements it with ROS calls. Arguments arrive
    validated; every coroutine returns a JSON-able dict or raises :class:`BackendError`."""

    classes: tuple[str, ...]

    def snapshot(self) -> dict[str, Any]: ...
    async def collect(self, label: str) -> dict[str, Any]: ...
    async def train(self, epochs: int, start: str) -> dict[str, Any]: ...
    async def cancel_training(self) -> dict[str, Any]: ...
    async def set_camera_source(self, source: str) -> dict[str, Any]: ...
    async def set_gesture(self, threshold: float, smoothing: float) -> dict[str, Any]: ...
    async def record(self, label: str | None) -> dict[str, Any]: ...
    async def delete_sample(self, path: str) -> dict[str, Any]: ...
    async def undo(self, label: str) -> dict[str, Any]: ...
    async def restore(self) -> dict[str, Any]: ...
    async def select_model(self, model_id: str) -> dict[str, Any]: ...
    async def evaluate(self) -> dict[str, Any]: ...
    def sample_path(self, sample_id: str) -> Path | None: ...
    def dataset_dir(self) -> Path: ...


# -- access control --------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def effective_token(host: str, token: str) -> tuple[str, bool]:
    """The token to require, and whether it was generated: ``token`` when given; else a random
    one (``secrets.token_urlsafe(24)``, 32 characters) when ``host`` is not loopback; else ''
    (no token on loopback, as Jupyter with ``--ip=127.0.0.1`` and a password off)."""
    if token:
        return token, False
    if is_loopback(host):
        return '', False
    return secrets.token_urlsafe(24), True


def _host_name(host_header: str) -> str:
    """'localhost:8080' -> 'localhost', '[::1]:80' -> '::1'."""
    if host_header.startswith('['):
        return host_header[1:].split(']', 1)[0]
    return host_header.rsplit(':', 1)[0] if host_header.count(':') == 1 else host_header


def _error(cls, message: str) -> web.HTTPException:
    return cls(text=json.dumps({'error': message}), content_type='application/json',
               headers=SECURITY_HEADERS)


class Guard:
    """Jupyter-like access rules, applied to every request before any route:

    - with a token: the request must carry it, as the ``gc_token`` cookie (set when the page is
      opened with ``?token=...``; HttpOnly, SameSite=Strict), an ``Authorization: token ...``
      header or the ``token`` query parameter; otherwise 401 (none given) or 403 (wrong);
    - without a token (loopback only): the Host header must name a loopback host, so that a
      web site cannot reach the node through DNS rebinding (403);
    - requests that change something (POST, the WebSocket) must come from the page itself: an
      ``Origin`` header, when present (browsers send one), must match the Host (403), and POST
      bodies must be ``application/json`` (415): a cross-site form cannot send that without a
      CORS preflight, which this server never grants.
    """

    def __init__(self, token: str):
        self.token = token

    def _presented(self, request: web.Request) -> str | None:
        auth = request.headers.get('Authorization', '')
        if auth.lower().startswith('token '):
            return auth[6:].strip()
        return request.query.get('token') or request.cookies.get(COOKIE)

    def check(self, request: web.Request) -> None:
        """Raise the HTTP error the request gets, if it may not pass."""
        if self.token:
            given = self._presented(request)
            if not given:
                raise _error(web.HTTPUnauthorized, 'a token is required: open the URL with '
                             '?token=... that the web node printed in its log')
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise _error(web.HTTPForbidden, 'wrong token')
        elif not is_loopback(_host_name(request.host)):
            raise _error(web.HTTPForbidden, f'host {request.host[:100]!r} refused: without a '
                         'token only localhost may be used')
        origin = request.headers.get('Origin')
        changes = request.method == 'POST' or request.path == '/ws'
        if changes and origin is not None and origin != f'{request.scheme}://{request.host}':
            raise _error(web.HTTPForbidden, f'cross-origin request from {origin[:100]!r} '
                         'refused')
        if request.method == 'POST' and request.content_type != 'application/json':
            raise _error(web.HTTPUnsupportedMediaType, 'the body must be application/json')

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        self.check(request)
        if self.token and request.query.get('token') and request.path == '/':
            # keep the token out of the address bar, history and screenshots (as Jupyter)
            found = web.HTTPFound('/', headers=SECURITY_HEADERS)
            found.set_cookie(COOKIE, self.token, httponly=True, samesite='Strict', path='/')
            raise found
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response


# -- request checks ------------------------------------------------------------------------------
class RequestError(ValueError):
    """A malformed request; the message says what is wrong, ``status`` is 400 or 413."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


async def parse_body(request: web.Request, fields: dict[str, type]) -> dict[str, Any]:
    """The JSON object of a POST, with exactly ``fields`` (name -> type; a bool is no int; a
    float field takes a JSON integer too, converted, as JavaScript writes 1.0 as ``1``).

    Raises:
        RequestError: body over MAX_BODY bytes (413), not UTF-8 JSON, not an object, a
            missing, extra or mistyped field (400).
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RequestError(f'body of {request.content_length} bytes; at most {MAX_BODY}', 413)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise RequestError(f'body over {MAX_BODY} bytes', 413)
    try:
        body = json.loads(raw.decode('utf-8')) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f'body is not JSON: {exc}') from None
    if not isinstance(body, dict):
        raise RequestError('body must be a JSON object')
    extra, missing = set(body) - set(fields), set(fields) - set(body)
    if extra or missing:
        raise RequestError(f'fields must be exactly {sorted(fields)}; got '
                           f'{len(extra)} unknown and {len(missing)} missing')
    for name, kind in fields.items():
        value = body[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            body[name] = value = float(value)
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            raise RequestError(f'{name} must be {kind.__name__}, got {type(value).__name__}')
    return body


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Integer query parameter in [low, high]; ``default`` when absent.

    Raises:
        RequestError: not a plain decimal integer, or out of range.
    """
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or \
            not low <= int(text) <= high:
        raise RequestError(f'{name} must be an integer in {low}..{high}')
    return int(text)


# -- video ------------------------------------------------------------------------------------
def encode_jpeg(msg, max_width: int, quality: int) -> bytes:
    """JPEG of a ``sensor_msgs/Image``-like frame (any encoding of imaging.ENCODINGS), scaled
    down with INTER_AREA, aspect kept, to at most ``max_width`` pixels wide.

    Raises:
        ImageFormatError: the message is malformed or its encoding unsupported.
    """
    view = image_to_array(msg)
    pixels = view.pixels
    if view.order == 'rgb':
        pixels = cv2.cvtColor(pixels[..., :3], cv2.COLOR_RGB2BGR)
    elif pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    h, w = pixels.shape[:2]
    if w > max_width:
        size = (max_width, max(1, round(h * max_width / w)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode('.jpg', np.ascontiguousarray(pixels),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageFormatError('OpenCV could not encode the frame as JPEG')
    return jpeg.tobytes()


def thumbnail(path: Path, dataset_dir: Path, width: int = 96) -> bytes:
    """A small JPEG of the sample image at ``path``, which must be a regular file (not a
    symbolic link) inside ``dataset_dir``.

    Raises:
        FileNotFoundError: the file is gone (deleted meanwhile), outside the dataset or a link.
        ImageFormatError: it is not a readable image.
    """
    path, root = Path(path), Path(dataset_dir).resolve()
    if path.is_symlink() or not path.resolve().is_relative_to(root) or not path.is_file():
        raise FileNotFoundError(f'{path.name}: not a sample file of the dataset')
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageFormatError(f'{path.name} is not a readable image')
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))),
                           interpolation=cv2.INTER_AREA)
    return cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


class Signal:
    """A counter that coroutines of the web loop can wait on; other threads bump it with
    :meth:`bump_threadsafe` (``loop.call_soon_threadsafe``; a closed loop is ignored)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.value = 0
        self._next = loop.create_future()

    def bump(self) -> None:
        """Increment and wake the waiters (in the loop's thread)."""
        self.value += 1
        done, self._next = self._next, self._loop.create_future()
        done.set_result(None)

    def bump_threadsafe(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self.bump)
        except RuntimeError:  # loop closed: the server is shutting down
            pass

    async def wait_above(self, value: int, timeout: float | None = None) -> bool:
        """Wait until the counter is above ``value``; False after ``timeout`` seconds."""
        try:
            while self.value <= value:
                await asyncio.wait_for(asyncio.shield(self._next), timeout)
        except asyncio.TimeoutError:
            return False
        return True


class FrameHub:
    """The newest camera frame, handed from the ROS thread to the web loop.

    :meth:`put` (ROS thread) only keeps a reference to the message: nothing is decoded or
    encoded unless a viewer asks, and then only the newest frame, once per (width, quality)
    however many viewers there are. Older frames are replaced, so no backlog ever builds up.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._msg = None
        self._arrived = Signal(loop)
        self._cache: tuple[int, int, int, bytes] | None = None
        self.viewers = 0
        self.frames_encoded = 0
        self.frames_sent = 0       # frames written to viewers, all together
        self.encode_seconds = 0.0  # CPU (thread) time spent encoding, s

    def stats(self) -> dict[str, Any]:
        """Counters for the page and the benchmark."""
        return {'viewers': self.viewers, 'frames_encoded': self.frames_encoded,
                'frames_sent': self.frames_sent,
                'encode_cpu_ms': round(self.encode_seconds * 1000.0, 1)}

    def put(self, msg) -> None:
        """Keep ``msg`` as the newest frame (any thread)."""
        self._msg = msg
        self._arrived.bump_threadsafe()

    async def next_jpeg(self, after: int, width: int, quality: int,
                        timeout: float) -> tuple[int, bytes] | None:
        """(sequence number, JPEG) of the newest frame numbered above ``after``; None when
        none arrives within ``timeout`` s. Encodes in a worker thread; the loop keeps serving.

        Raises:
            ImageFormatError: the newest frame is malformed.
        """
        if not await self._arrived.wait_above(after, timeout):
            return None
        seq, msg = self._arrived.value, self._msg
        cached = self._cache
        if cached is not None and cached[:3] == (seq, width, quality):
            return seq, cached[3]
        jpeg, cpu = await asyncio.get_running_loop().run_in_executor(
            None, _timed_encode, msg, width, quality)
        self.frames_encoded += 1
        self.encode_seconds += cpu
        self._cache = (seq, width, quality, jpeg)
        return seq, jpeg


def _timed_encode(msg, width: int, quality: int) -> tuple[bytes, float]:
    start = time.thread_time()
    jpeg = encode_jpeg(msg, width, quality)
    return jpeg, time.thread_time() - start


# -- the application ----------------------------------------------------------------------------
def read_assets(folder: Path) -> dict[str, bytes]:
    """The page's files (:data:`ASSETS`) from ``folder``, read once at start.

    Raises:
        OSError: one is missing or unreadable (the package is not installed completely).
    """
    return {name: (folder / name).read_bytes() for name in ASSETS}


def make_app(config: WebConfig, backend: Backend, frames: FrameHub, state: Signal,
             assets: dict[str, bytes]) -> web.Application:
    """The aiohttp application. ``config.token`` must be the effective token; ``state`` is
    bumped whenever ``backend.snapshot()`` changed."""
    app = web.Application(middlewares=[Guard(config.token).middleware],
                          client_max_size=MAX_BODY)
    min_period = 1.0 / config.state_rate
    max_fps = max(1, math.ceil(config.max_fps))

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info.get('name', 'index.html')
        if name not in ASSETS:
            raise _error(web.HTTPNotFound, 'no such file')
        return web.Response(body=assets[name], content_type=ASSETS[name], charset='utf-8')

    def video_query(request: web.Request) -> tuple[int, int]:
        try:
            return (query_int(request, 'width', config.max_width, 16, config.max_width),
                    query_int(request, 'quality', config.jpeg_quality, 10, 95))
        except RequestError as exc:
            raise _error(web.HTTPBadRequest, str(exc)) from None

    async def stream(request: web.Request) -> web.StreamResponse:
        width, quality = video_query(request)
        try:
            fps = min(float(query_int(request, 'fps', max_fps, 1, max_fps)), config.max_fps)
        except RequestError as exc:
            raise _error(web.HTTPBadRequest, str(exc)) from None
        if frames.viewers >= config.max_viewers:
            raise _error(web.HTTPServiceUnavailable,
                         f'{config.max_viewers} video streams are open already')
        response = web.StreamResponse(headers={
            'Content-Type': 'multipart/x-mixed-replace; boundary=frame', **SECURITY_HEADERS})
        frames.viewers += 1
        try:
            await response.prepare(request)
            seq, next_at = 0, time.monotonic()
            while True:
                try:
                    got = await frames.next_jpeg(seq, width, quality, timeout=5.0)
                except ImageFormatError as exc:
                    LOG.warning('cannot show a camera frame: %s', exc)
                    await asyncio.sleep(1.0)
                    continue
                if got is None:  # no frame for 5 s: the page says "stale"; viewer still there?
                    if request.transport is None or request.transport.is_closing():
                        break
                    continue
                seq, jpeg = got
                # write() waits for the socket: a slow viewer gets fewer frames, never old ones
                await response.write(b'--frame\r\nContent-Type: image/jpeg\r\nContent-Length: '
                                     + str(len(jpeg)).encode() + b'\r\n\r\n' + jpeg + b'\r\n')
                frames.frames_sent += 1
                next_at = max(next_at + 1.0 / fps, time.monotonic())
                await asyncio.sleep(next_at - time.monotonic())
        except (ConnectionError, asyncio.CancelledError):
            pass  # the viewer went away
        finally:
            frames.viewers -= 1
        return response

    async def snapshot(request: web.Request) -> web.Response:
        width, quality = video_query(request)
        frames.viewers += 1
        try:
            got = await frames.next_jpeg(0, width, quality, timeout=5.0)
        except ImageFormatError as exc:
            raise _error(web.HTTPServiceUnavailable, f'cannot show the frame: {exc}') from None
        finally:
            frames.viewers -= 1
        if got is None:
            raise _error(web.HTTPServiceUnavailable, 'no camera frame received yet')
        return web.Response(body=got[1], content_type='image/jpeg')

    async def state_once(request: web.Request) -> web.Response:
        return web.json_response(backend.snapshot())

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE, heartbeat=20.0)
        await ws.prepare(request)

        async def push():
            while not ws.closed:
                version = state.value
                await ws.send_str(json.dumps(backend.snapshot()))
                await asyncio.sleep(min_period)
                await state.wait_above(version)

        sender = asyncio.create_task(push())
        try:
            async for msg in ws:  # the page sends nothing; binary or errors end the connection
                if msg.type in (WSMsgType.ERROR, WSMsgType.BINARY):
                    break
        finally:
            sender.cancel()
            await ws.close()
        return ws

    def api(fields: dict[str, type], call):
        async def handler(request: web.Request) -> web.Response:
            try:
                body = await parse_body(request, fields)
                result = await call(**body)
            except RequestError as exc:
                return web.json_response({'error': str(exc)}, status=exc.status)
            except BackendError as exc:
                return web.json_response({'error': str(exc)}, status=exc.status)
            state.bump()
            return web.json_response(result)
        return handler

    async def collect(label: str):
        return await backend.collect(known_label(label))

    def known_label(label: str) -> str:
        if label not in backend.classes:
            raise RequestError(f'label {label[:64]!r} is not one of the classes '
                               f'{list(backend.classes)}')
        return label

    async def train(epochs: int, start: str):
        if not 1 <= epochs <= 10000:
            raise RequestError('epochs must be in 1..10000')
        if start not in TRAIN_STARTS:
            raise RequestError(f'start must be one of {list(TRAIN_STARTS)}')
        return await backend.train(epochs, start)

    async def record_start(label: str):
        return await backend.record(known_label(label))

    async def record_stop():
        return await backend.record(None)

    async def delete(id: str):  # the field is called id
        path = backend.sample_path(id)
        if path is None:
            raise RequestError('no such sample on the page (reload it)')
        return await backend.delete_sample(str(path))

    async def undo(label: str):
        return await backend.undo(known_label(label))

    async def select_model(model_id: str):
        if not 1 <= len(model_id) <= 200:
            raise RequestError('model_id must be 1..200 characters')
        return await backend.select_model(model_id)

    async def thumb(request: web.Request) -> web.Response:
        path = backend.sample_path(request.match_info['id'])
        if path is None:
            raise _error(web.HTTPNotFound, 'no such sample')
        try:
            jpeg = await asyncio.get_running_loop().run_in_executor(
                None, thumbnail, path, backend.dataset_dir())
        except (OSError, ImageFormatError) as exc:
            raise _error(web.HTTPNotFound, str(exc)) from None
        return web.Response(body=jpeg, content_type='image/jpeg',
                            headers={'Cache-Control': 'private, max-age=3600'})

    async def gesture(threshold: float, smoothing: float):
        # the classifier checks again (its parameter ranges); this keeps NaN and junk local
        for name, value in (('threshold', threshold), ('smoothing', smoothing)):
            low, high = DebounceConfig.RANGES[name]
            if not (math.isfinite(value) and low <= value <= high):
                raise RequestError(f'{name} must be in [{low:g}, {high:g}]')
        return await backend.set_gesture(threshold, smoothing)

    async def camera(source: str):
        if source not in config.camera_sources:
            raise RequestError("source is not one of the web node's camera_sources")
        return await backend.set_camera_source(source)

    app.router.add_get('/', asset)
    app.router.add_get('/static/{name}', asset)
    app.router.add_get('/stream', stream)
    app.router.add_get('/snapshot', snapshot)
    app.router.add_get('/ws', websocket)
    app.router.add_get('/api/state', state_once)
    app.router.add_post('/api/collect', api({'label': str}, collect))
    app.router.add_post('/api/train', api({'epochs': int, 'start': str}, train))
    app.router.add_post('/api/train/cancel', api({}, backend.cancel_training))
    app.router.add_post('/api/camera', api({'source': str}, camera))
    app.router.add_post('/api/gesture', api({'threshold': float, 'smoothing': float}, gesture))
    app.router.add_post('/api/record/start', api({'label': str}, record_start))
    app.router.add_post('/api/record/stop', api({}, record_stop))
    app.router.add_post('/api/delete', api({'id': str}, delete))
    app.router.add_post('/api/undo', api({'label': str}, undo))
    app.router.add_post('/api/restore', api({}, backend.restore))
    app.router.add_post('/api/models/select', api({'model_id': str}, select_model))
    app.router.add_post('/api/evaluate', api({}, backend.evaluate))
    app.router.add_get('/thumb/{id}', thumb)
    return app
