"""The HTTP side of the ``web`` node: an aiohttp application that serves the interactive page,
MJPEG video, a WebSocket of state and a small JSON API, with Jupyter-style access control.

No ROS here: the application talks to a :class:`Backend` (the web node implements it with ROS
service and action calls), so routes stay thin and the request checks and security rules can
be read and tested on their own.

Routes (all behind :class:`Guard`)::

    GET  /                 the page (index.html; app.js and style.css under /static/)
    GET  /stream           MJPEG (multipart/x-mixed-replace) of the newest camera frame;
                           query: fps (1..max_fps), width (16..max_width), quality (10..95);
                           at most max_viewers at once (503 with the reason beyond), a viewer
                           that stops reading for write_timeout s is dropped
    GET  /snapshot         one JPEG of the newest frame (query: width, quality)
    GET  /ws               WebSocket: the state as JSON, pushed on change at <= state_rate Hz
    GET  /api/state        the same state once
    POST /api/collect      {"label": str}   -> collect (label: one of the task's classes)
    POST /api/train        {"epochs": int, "start": "auto"|"continue"|"fresh"}
                                            -> a train goal (epochs 0 = auto, or 1..the
                                               trainer's max_epochs, 1..10000 while it is not
                                               known): train more from the current model, or
                                               start over
    POST /api/train/cancel {}               -> cancel the goal this page (node) sent
    POST /api/camera       {"source": str}  -> the camera's ``source`` parameter; only one of
                                               the web node's ``camera_sources`` or the source
                                               the camera started with
    POST /api/gesture      {"threshold": float, "smoothing": float}
                                            -> the classifier's gesture_threshold ([0, 1]) and
                                               gesture_smoothing ([0, 0.99]); its refusal is a
                                               409 with the reason
    POST /api/record/start {"label": str, "fps": float}
                                            -> hold to record: the collector saves new frames,
    POST /api/record/stop  {}                  at most fps (0.5..30) a second and never the
                                               same frame twice, until stop (or its limits)
    POST /api/delete       {"id": str}      -> delete_samples of one sample shown on the page
    POST /api/undo         {"label": str}   -> undo_collect of the newest sample of a class
    POST /api/restore      {}               -> restore_samples of the last delete / undo
    POST /api/classes      {"name": str}    -> add a class after the task's classes (a safe
                                               name, not one of them): ``classes`` set on the
                                               trainer, classifier, collector and web node
    POST /api/evaluate     {}               -> the evaluate action on the current model
    POST /api/models/select {"model_id": str} -> select_model (one of the ``models`` list)
    GET  /api/samples      ?label=<class>&page=<n>: page n (0: newest) of the class's samples,
                           newest first, as ids (every sample is reachable)
    GET  /review/{id}      the JPEG of a frame of the classifier's review queue (id: decimal)
    POST /api/review       {"id": int, "label": str, "discard": bool}
                                            -> label_review: store a queued frame under a class
                                               (label: one of the classes) or discard it
    GET  /thumb/{id}       a small JPEG of a sample shown on the page (ids are opaque; only
                           samples the collector reported can be shown)
    GET  /api/dataset/export  the task's dataset as a zip (<class>/<name>.jpg + manifest.json,
                           core.archive), streamed as the collector's get_samples sends it
    POST /api/dataset/import  body: a dataset zip (application/zip, at most
                           :data:`MAX_UPLOAD` bytes) -> {"added", "refused", "by_kind",
                           "refusals"}: each member checked, each image stored through the
                           collector's add_sample
    GET  /api/model/download  the current model file (<task>-<model_id>.pt), from the
                           trainer's chunked get_model
    POST /api/model/upload  body: a model file (application/octet-stream, at most
                           :data:`MAX_MODEL_UPLOAD` bytes) -> {"model_id", "message"}: sent to
                           the trainer's chunked put_model, checked and imported there as
                           import_model does, and made current

Every POST but the import takes a JSON object of at most :data:`MAX_BODY` bytes with exactly
the listed fields, each key once, read whole within ``body_timeout`` s (408 otherwise);
anything else is answered 4xx ``{"error": reason}`` before the backend sees it. Request
headers must arrive within ``header_timeout`` s of the connection (or of the previous
answer), or the connection is closed.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import AsyncIterator
from typing import IO, Any, Protocol

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from ..core.archive import MAX_ARCHIVE_BYTES
from ..core.transfer import MAX_UPLOAD_BYTES
from ..core.gestures import DebounceConfig
from ..core.imaging import ImageFormatError, image_to_array
from ..core.tasks import InvalidNameError, validate_name

__all__ = ['WebConfig', 'Backend', 'BackendError', 'Signal', 'FrameHub', 'Guard',
           'RequestError', 'ASSETS', 'MAX_BODY', 'is_loopback', 'effective_token', 'make_app',
           'read_assets', 'encode_jpeg', 'parse_body', 'read_body', 'read_upload', 'MAX_UPLOAD',
           'access_warning', 'NO_TOKEN_WARNING']

LOG = logging.getLogger(__name__)

#: Largest request body accepted, bytes (the API's bodies are a few dozen bytes).
MAX_BODY = 4096
#: Largest upload (a dataset zip), bytes: core.archive.MAX_ARCHIVE_BYTES (264 MiB). It is
#: spooled to a temporary file beyond :data:`UPLOAD_SPOOL` bytes, never held in memory whole.
MAX_UPLOAD = MAX_ARCHIVE_BYTES
UPLOAD_SPOOL = 8 * 1024 * 1024
#: Seconds an upload may take in all (each piece must also arrive within body_timeout).
UPLOAD_TIMEOUT = 600.0
#: POST paths whose body is not JSON, and the content type each must have instead (one a
#: cross-site form cannot send without a CORS preflight, which this server never grants).
UPLOAD_TYPES = {'/api/dataset/import': 'application/zip',
                '/api/model/upload': 'application/octet-stream'}
#: Largest model upload, bytes: core.transfer.MAX_UPLOAD_BYTES (256 MiB; a ResNet-18 file
#: is about 45 MB), the trainer's own limit.
MAX_MODEL_UPLOAD = MAX_UPLOAD_BYTES
#: Largest WebSocket message accepted from a page, bytes (the page sends none).
MAX_WS_MESSAGE = 1024
#: The page's files (name -> content type); nothing else is ever read from disk.
ASSETS = {'index.html': 'text/html', 'app.js': 'text/javascript', 'style.css': 'text/css'}
#: The access cookie's name is this plus the port the node listens on: two web nodes on one
#: host (cookies ignore ports) each keep their own.
COOKIE = 'gc_session_'
#: Header limits (aiohttp's parser), bytes: longest request line, longest header field (the
#: number of fields is bounded by aiohttp's own default, 128 in 3.14).
MAX_LINE, MAX_FIELD = 8190, 8190
#: Frames per second hold-to-record may ask for (the collector's max_collect_rate and the
#: camera's rate bound it further).
RECORD_FPS = (0.5, 30.0)
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
        header_timeout: s a client has to send a request's headers (from the connection or
            the previous answer); then the connection is closed.
        body_timeout: s a client has to send a request's body; then 408.
        write_timeout: s a video viewer may stop reading before it is dropped.
    """

    host: str = '127.0.0.1'
    port: int = 8080
    token: str = ''
    max_fps: float = 30.0
    max_width: int = 640
    jpeg_quality: int = 80
    state_rate: float = 30.0
    max_viewers: int = 16
    camera_sources: tuple[str, ...] = ()
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    write_timeout: float = 5.0


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
    task_name: str

    def snapshot(self) -> dict[str, Any]: ...
    async def collect(self, label: str) -> dict[str, Any]: ...
    async def train(self, epochs: int, start: str) -> dict[str, Any]: ...
    async def cancel_training(self) -> dict[str, Any]: ...
    async def set_camera_source(self, source: str) -> dict[str, Any]: ...
    async def set_gesture(self, threshold: float, smoothing: float) -> dict[str, Any]: ...
    async def record(self, label: str | None, fps: float | None = None) -> dict[str, Any]: ...
    async def delete_sample(self, path: str) -> dict[str, Any]: ...
    async def undo(self, label: str) -> dict[str, Any]: ...
    async def restore(self) -> dict[str, Any]: ...
    async def add_class(self, name: str) -> dict[str, Any]: ...
    async def select_model(self, model_id: str) -> dict[str, Any]: ...
    async def evaluate(self) -> dict[str, Any]: ...
    def sample_path(self, sample_id: str) -> Path | None: ...
    def camera_sources(self) -> tuple[str, ...]: ...
    async def review_frame(self, frame_id: int) -> bytes: ...
    async def label_review(self, frame_id: int, label: str, discard: bool) -> dict[str, Any]: ...
    async def list_samples(self, label: str, page: int) -> dict[str, Any]: ...
    def limits(self) -> dict[str, int | None]: ...
    def dataset_dir(self) -> Path: ...
    def export_dataset(self) -> AsyncIterator[bytes]: ...
    async def import_dataset(self, file: IO[bytes]) -> dict[str, Any]: ...
    async def model_download(self) -> tuple[str, int, AsyncIterator[bytes]]: ...
    async def model_upload(self, file: IO[bytes]) -> dict[str, Any]: ...


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


#: Said in the log and on the page while the page needs no token (loopback only).
NO_TOKEN_WARNING = ('no token: every program and every user account on this machine can use '
                    'the page (collect, delete, train, switch the camera, export the '
                    'dataset\'s photos); safe only on a '
                    'machine that you alone use. Set the web node\'s token parameter otherwise.')


def access_warning(token: str) -> str:
    """The warning for the effective ``token`` ('' when a token is required)."""
    return '' if token else NO_TOKEN_WARNING


def _host_name(host_header: str) -> str:
    """'localhost:8080' -> 'localhost', '[::1]:80' -> '::1'."""
    if host_header.startswith('['):
        return host_header[1:].split(']', 1)[0]
    return host_header.rsplit(':', 1)[0] if host_header.count(':') == 1 else host_header


def _error(cls, message: str) -> web.HTTPException:
    return cls(text=json.dumps({'error': message}), content_type='application/json',
               headers=SECURITY_HEADERS)


def _local_port(request: web.Request) -> int:
    """The port this node accepted the request on (0 when unknown)."""
    sock = request.transport.get_extra_info('sockname') if request.transport else None
    return int(sock[1]) if sock and len(sock) > 1 else 0


class Guard:
    """Jupyter-like access rules, applied to every request before any route:

    - with a token: the request must carry it, either once in the address of the page
      (``/?token=...``: exchanged for a session cookie and redirected to ``/``, so the token
      leaves the address bar and the history) or as an ``Authorization: token ...`` header
      (scripts); afterwards the page sends the session cookie, named after the port
      (``gc_session_<port>``: two nodes on one host keep theirs apart) and holding a random
      session value made at each start, never the token itself (a browser sends a host's
      cookies to every port of it). A token in any other URL is refused (400): URLs end up in
      histories, proxies and logs. Missing: 401; wrong: 403 (compared in constant time);
    - without a token (loopback only): the Host header must name a loopback host, so that a
      web site cannot reach the node through DNS rebinding (403);
    - requests made by another site (``Sec-Fetch-Site: cross-site``, sent by browsers) may only
      navigate to the page itself: a hostile page cannot hold video slots or read the state
      (403);
    - requests that change something (POST, the WebSocket) must come from the page itself: an
      ``Origin`` header, when present (browsers send one), must match the Host (403), and POST
      bodies must be ``application/json`` (415; the dataset import ``application/zip``, the
      model upload ``application/octet-stream``,
      :data:`UPLOAD_TYPES`): a cross-site form cannot send either without a CORS preflight,
      which this server never grants.
    """

    def __init__(self, token: str):
        self.token = token
        #: the session cookie's value, valid for this start of the node only
        self.session = secrets.token_urlsafe(32) if token else ''

    @staticmethod
    def cookie_name(request: web.Request) -> str:
        return f'{COOKIE}{_local_port(request)}'

    @staticmethod
    def _same(given: str, wanted: str) -> bool:
        return hmac.compare_digest(given.encode(), wanted.encode())

    def _check_token(self, request: web.Request) -> None:
        in_url = request.query.get('token')
        if in_url is not None and request.path != '/':
            raise _error(web.HTTPBadRequest, 'a token is not accepted in a URL (histories, '
                         'proxies and logs keep URLs): open the page once with /?token=..., '
                         'or send the header "Authorization: token ..."')
        auth = request.headers.get('Authorization', '')
        if auth.lower().startswith('token '):
            given, wanted = auth[6:].strip(), self.token
        elif in_url:
            given, wanted = in_url, self.token
        elif request.cookies.get(self.cookie_name(request)):
            given, wanted = request.cookies[self.cookie_name(request)], self.session
        else:
            raise _error(web.HTTPUnauthorized, 'a token is required: open the URL with '
                         '?token=... that the web node printed in its log')
        if not self._same(given, wanted):
            raise _error(web.HTTPForbidden, 'wrong token' if wanted is self.token else
                         'this session ended (the web node restarted): open the URL with '
                         '?token=... again')

    def check(self, request: web.Request) -> None:
        """Raise the HTTP error the request gets, if it may not pass."""
        if self.token:
            self._check_token(request)
        elif not is_loopback(_host_name(request.host)):
            raise _error(web.HTTPForbidden, f'host {request.host[:100]!r} refused: without a '
                         'token only localhost may be used')
        if request.headers.get('Sec-Fetch-Site') == 'cross-site' and request.path != '/':
            raise _error(web.HTTPForbidden, 'cross-site request refused')
        origin = request.headers.get('Origin')
        changes = request.method == 'POST' or request.path == '/ws'
        if changes and origin is not None and origin != f'{request.scheme}://{request.host}':
            raise _error(web.HTTPForbidden, f'cross-origin request from {origin[:100]!r} '
                         'refused')
        wanted = UPLOAD_TYPES.get(request.path, 'application/json')
        if request.method == 'POST' and request.content_type != wanted:
            raise _error(web.HTTPUnsupportedMediaType, f'the body must be {wanted}')

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        self.check(request)
        if self.token and request.query.get('token') and request.path == '/':
            # the token is exchanged for the session cookie and leaves the address bar, the
            # history and screenshots (as Jupyter)
            found = web.HTTPFound('/', headers=SECURITY_HEADERS)
            found.set_cookie(self.cookie_name(request), self.session, httponly=True,
                             samesite='Strict', path='/')
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
    """A malformed request; the message says what is wrong, ``status`` is 400, 408 or
    413."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: an object with a key twice is refused (the last one would win
    here and the first one in another parser: the checked and the used value could differ)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise RequestError(f'duplicate key {twice[:64]!r} in the body')
    return out


async def read_body(request: web.Request, timeout: float = 10.0) -> bytes:
    """The whole body of ``request`` (however many TCP segments it came in), at most
    :data:`MAX_BODY` bytes, within ``timeout`` s.

    Raises:
        RequestError: over MAX_BODY bytes (413), not complete within ``timeout`` s (408).
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RequestError(f'body of {request.content_length} bytes; at most {MAX_BODY}', 413)
    chunks, size = [], 0

    async def read_all() -> None:
        nonlocal size
        while True:
            chunk = await request.content.read(MAX_BODY + 1 - size)
            if not chunk:
                return
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                raise RequestError(f'body over {MAX_BODY} bytes', 413)

    try:
        await asyncio.wait_for(read_all(), timeout)
    except asyncio.TimeoutError:
        raise RequestError(f'the body did not arrive within {timeout:g} s', 408) from None
    return b''.join(chunks)


async def read_upload(request: web.Request, file: IO[bytes], limit: int = MAX_UPLOAD,
                      idle_timeout: float = 10.0, timeout: float = UPLOAD_TIMEOUT) -> int:
    """Copy the body of ``request`` into ``file``, at most ``limit`` bytes, each piece
    within ``idle_timeout`` s and the whole within ``timeout`` s; the bytes copied.

    Raises:
        RequestError: over ``limit`` (413, by Content-Length before reading or while
            reading), empty (400), too slow (408).
    """
    if request.content_length is not None and request.content_length > limit:
        raise RequestError(f'upload of {request.content_length} bytes; at most {limit}', 413)
    size, deadline = 0, time.monotonic() + timeout
    while True:
        left = min(idle_timeout, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(request.content.read(1 << 20), max(left, 0.0))
        except asyncio.TimeoutError:
            raise RequestError('the upload did not arrive in time (each piece within '
                               f'{idle_timeout:g} s, all within {timeout:g} s)', 408) from None
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise RequestError(f'upload over {limit} bytes', 413)
        file.write(chunk)
    if not size:
        raise RequestError('the upload is empty')
    file.seek(0)
    return size


async def parse_body(request: web.Request, fields: dict[str, type],
                     timeout: float = 10.0) -> dict[str, Any]:
    """The JSON object of a POST, with exactly ``fields`` (name -> type; a bool is no int; a
    float field takes a JSON integer too, converted, as JavaScript writes 1.0 as ``1``), each
    key once; the body read whole (:func:`read_body`).

    Raises:
        RequestError: body over MAX_BODY bytes (413), incomplete after ``timeout`` s (408),
            not UTF-8 JSON, not an object, a duplicate, missing, extra or mistyped field (400).
    """
    raw = await read_body(request, timeout)
    try:
        body = json.loads(raw.decode('utf-8'), object_pairs_hook=_no_duplicates) if raw else {}
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
        self.dropped = 0           # viewers dropped for not reading within write_timeout
        self.frames_encoded = 0
        self.frames_sent = 0       # frames written to viewers, all together
        self.encode_seconds = 0.0  # CPU (thread) time spent encoding, s

    def stats(self) -> dict[str, Any]:
        """Counters for the page and the benchmark."""
        return {'viewers': self.viewers, 'dropped': self.dropped,
                'frames_encoded': self.frames_encoded,
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
    access = {'token': bool(config.token), 'warning': access_warning(config.token)}

    def page_state() -> dict[str, Any]:
        """The backend's state plus what the HTTP side knows (access, video capacity)."""
        return {**backend.snapshot(), 'access': access,
                'video_capacity': {'viewers': frames.viewers,
                                   'max_viewers': config.max_viewers}}

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
                         f'{config.max_viewers} video streams are open already (the web '
                         'node\'s max_viewers); close another page or try again later')
        response = web.StreamResponse(headers={
            'Content-Type': 'multipart/x-mixed-replace; boundary=frame', **SECURITY_HEADERS})
        frames.viewers += 1
        state.bump()
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
                # write() waits for the socket: a slow viewer gets fewer frames, never old
                # ones; one that stops reading (a closed lid) is dropped and frees its slot
                part = (b'--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ' +
                        str(len(jpeg)).encode() + b'\r\n\r\n' + jpeg + b'\r\n')
                try:
                    await asyncio.wait_for(response.write(part), config.write_timeout)
                except asyncio.TimeoutError:
                    frames.dropped += 1
                    if request.transport is not None:
                        request.transport.abort()
                    break
                frames.frames_sent += 1
                next_at = max(next_at + 1.0 / fps, time.monotonic())
                await asyncio.sleep(next_at - time.monotonic())
        except (ConnectionError, asyncio.CancelledError):
            pass  # the viewer went away
        finally:
            frames.viewers -= 1
            state.bump()
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
        return web.json_response(page_state())

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE, heartbeat=20.0)
        await ws.prepare(request)

        async def push():
            while not ws.closed:
                version = state.value
                await ws.send_str(json.dumps(page_state()))
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
                body = await parse_body(request, fields, config.body_timeout)
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

    async def add_class(name: str):
        try:
            validate_name(name, 'class name')
        except InvalidNameError as exc:
            raise RequestError(str(exc)) from None
        if name in backend.classes:
            raise RequestError(f'{name!r} is already a class')
        return await backend.add_class(name)

    async def train(epochs: int, start: str):
        most = backend.limits().get('max_epochs') or 10000
        if not 0 <= epochs <= most:
            raise RequestError(f'epochs must be 0 (auto) or in 1..{most}' + (
                " (the trainer's max_epochs)" if most != 10000 else ''))
        if start not in TRAIN_STARTS:
            raise RequestError(f'start must be one of {list(TRAIN_STARTS)}')
        return await backend.train(epochs, start)

    async def record_start(label: str, fps: float):
        if not (math.isfinite(fps) and RECORD_FPS[0] <= fps <= RECORD_FPS[1]):
            raise RequestError(f'fps must be in {RECORD_FPS[0]:g}..{RECORD_FPS[1]:g}')
        return await backend.record(known_label(label), fps)

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

    async def samples(request: web.Request) -> web.Response:
        try:
            label = known_label(request.query.get('label', ''))
            page = query_int(request, 'page', 0, 0, 100000)
        except RequestError as exc:
            raise _error(web.HTTPBadRequest, str(exc)) from None
        return web.json_response(await backend.list_samples(label, page))

    async def review_frame(request: web.Request) -> web.Response:
        text = request.match_info['id']
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            raise _error(web.HTTPBadRequest, 'a review frame id is a decimal number')
        try:
            jpeg = await backend.review_frame(int(text))
        except BackendError as exc:
            raise _error(web.HTTPNotFound if exc.status == 404 else web.HTTPBadGateway,
                         str(exc)) from None
        return web.Response(body=jpeg, content_type='image/jpeg',
                            headers={'Cache-Control': 'private, max-age=3600'})

    async def label_review(id: int, label: str, discard: bool):  # the field is called id
        if not 0 <= id < 2 ** 64:
            raise RequestError('id must be a queued frame\'s id')
        if discard:
            if label:
                raise RequestError('a discarded frame takes no label')
        else:
            known_label(label)
        return await backend.label_review(id, label, discard)

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
        if source not in backend.camera_sources():
            raise RequestError("source is not one of the web node's camera_sources (or the "
                               "camera's own first source)")
        return await backend.set_camera_source(source)

    async def send_download(request: web.Request, chunks, what: str, first: bytes,
                            headers: dict) -> web.StreamResponse:
        """Stream ``first`` then the async iterator ``chunks`` (bytes) as a download. A
        BackendError mid-stream cuts the connection (no truncated file that looks whole is
        saved); a browser that goes away ends it quietly; ``chunks`` is always closed."""
        response = web.StreamResponse(headers={**headers, **SECURITY_HEADERS})
        try:
            await response.prepare(request)
            if first:
                await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        except BackendError as exc:
            LOG.warning('%s failed: %s', what, exc)
            if request.transport is not None:
                request.transport.abort()
            return response
        except ConnectionError:  # the browser went away (a cancelled download)
            return response
        finally:
            await chunks.aclose()
        await response.write_eof()
        return response

    async def export_dataset(request: web.Request) -> web.StreamResponse:
        chunks = backend.export_dataset()
        try:
            first = await chunks.__anext__()  # the listing: its failure is still an answer
        except BackendError as exc:
            return web.json_response({'error': str(exc)}, status=exc.status)
        name = f'{backend.task_name}-dataset.zip'
        return await send_download(request, chunks, 'dataset export', first, {
            'Content-Type': 'application/zip',
            'Content-Disposition': f'attachment; filename="{name}"'})

    def upload(limit: int, use):
        """A POST handler whose body is a file (at most ``limit`` bytes, spooled to a temporary
        file beyond UPLOAD_SPOOL) given to ``use(file)``; its answer as JSON."""
        async def handler(request: web.Request) -> web.Response:
            with tempfile.SpooledTemporaryFile(max_size=UPLOAD_SPOOL) as file:
                try:
                    await read_upload(request, file, limit, config.body_timeout)
                    result = await use(file)
                except (RequestError, BackendError) as exc:
                    return web.json_response({'error': str(exc)}, status=exc.status)
            state.bump()
            return web.json_response(result)
        return handler

    async def download_model(request: web.Request) -> web.StreamResponse:
        try:
            model_id, size, chunks = await backend.model_download()
        except BackendError as exc:
            return web.json_response({'error': str(exc)}, status=exc.status)
        return await send_download(request, chunks, 'model download', b'', {
            'Content-Type': 'application/octet-stream', 'Content-Length': str(size),
            'Content-Disposition':
                f'attachment; filename="{backend.task_name}-{model_id}.pt"'})

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
    app.router.add_post('/api/record/start', api({'label': str, 'fps': float}, record_start))
    app.router.add_post('/api/record/stop', api({}, record_stop))
    app.router.add_post('/api/delete', api({'id': str}, delete))
    app.router.add_post('/api/undo', api({'label': str}, undo))
    app.router.add_post('/api/restore', api({}, backend.restore))
    app.router.add_post('/api/models/select', api({'model_id': str}, select_model))
    app.router.add_post('/api/evaluate', api({}, backend.evaluate))
    app.router.add_post('/api/classes', api({'name': str}, add_class))
    app.router.add_get('/thumb/{id}', thumb)
    app.router.add_get('/api/samples', samples)
    app.router.add_get('/review/{id}', review_frame)
    app.router.add_get('/api/dataset/export', export_dataset)
    app.router.add_post('/api/dataset/import', upload(MAX_UPLOAD, backend.import_dataset))
    app.router.add_get('/api/model/download', download_model)
    app.router.add_post('/api/model/upload', upload(MAX_MODEL_UPLOAD, backend.model_upload))
    app.router.add_post('/api/review', api({'id': int, 'label': str, 'discard': bool},
                                           label_review))
    return app
