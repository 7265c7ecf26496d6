"""The web node's HTTP server over real sockets, without ROS: the real aiohttp app and server
thread (web.server.WebServer) in front of a fake backend, so that the HTTP surface (slow,
split, crowded and cross-port clients) is tested as a network sees it. Nothing here asserts
timing: the waits are conditions with generous deadlines.
"""
from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from gesture_classifier.core.imaging import array_to_image_fields
from gesture_classifier.web.app import MAX_UPLOAD, WebConfig
from gesture_classifier.web.server import WebServer
from httpcalls import post, request

CLASSES = ('thumbs_up', 'thumbs_down')
TOKEN = 'test-token-0123456789abcdef'


class FakeBackend:
    """What the app needs of the web node's backend; records the calls it gets."""

    classes = CLASSES

    def __init__(self):
        self.calls: list[tuple] = []
        self.frames = self.changed = None

    def attach(self, frames, changed):
        self.frames, self.changed = frames, changed

    def snapshot(self):
        return {'task': 'thumbs', 'classes': list(CLASSES)}

    async def collect(self, label):
        self.calls.append(('collect', label))
        return {'label': label, 'count': 1, 'message': 'saved'}

    async def train(self, epochs, start):
        self.calls.append(('train', epochs, start))
        return {'accepted': True, 'epochs': epochs}

    async def import_dataset(self, file):
        data = file.read()
        self.calls.append(('import_dataset', len(data), hashlib.sha256(data).hexdigest()))
        return {'added': 0, 'refused': 0, 'by_kind': {}, 'refusals': []}

    def sample_path(self, sid):
        return None

    def camera_sources(self):
        return ('0',)

    def limits(self):
        return {'max_epochs': 100, 'max_burst': 50}

    def __getattr__(self, name):  # every other action: recorded, answered
        async def call(*args, **kwargs):
            self.calls.append((name, *args))
            return {}
        return call


def _frame():
    pixels = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return SimpleNamespace(**array_to_image_fields(cv2.GaussianBlur(pixels, (0, 0), 3),
                                                   'bgr8'))


class Camera:
    """Puts a 640x480 frame into the server's frame hub about 30 times a second."""

    def __init__(self, backend):
        self.backend, self.stop = backend, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        frame = _frame()
        while not self.stop.wait(1 / 30):
            self.backend.frames.put(frame)


@pytest.fixture
def serve():
    """``serve(**config)`` -> (server, backend): a WebServer on a free loopback port."""
    servers, cameras = [], []

    def start(camera=False, **config):
        backend = FakeBackend()
        server = WebServer(WebConfig(port=0, **config), backend).start()
        servers.append(server)
        if camera:
            cameras.append(Camera(backend))
        return server, backend

    yield start
    for c in cameras:
        c.stop.set()
    for s in servers:
        s.stop()


def raw(port) -> socket.socket:
    s = socket.create_connection(('127.0.0.1', port), timeout=30)
    return s


def read_answer(s: socket.socket, deadline_s: float = 30.0) -> bytes:
    """Everything the server sends until it closes the connection or ``deadline_s`` passes."""
    s.settimeout(1.0)
    out, end = b'', time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
        if b'\r\n\r\n' in out and b'Content-Length' in out:
            head, _, body = out.partition(b'\r\n\r\n')
            n = int(head.split(b'Content-Length: ')[1].split(b'\r\n')[0])
            if len(body) >= n:
                break
    return out


def closed_by_server(s: socket.socket, deadline_s: float, trickle: bytes = b'') -> bool:
    """Whether the server closes ``s`` within ``deadline_s`` while the client sends
    ``trickle`` (one byte every half second; nothing when empty)."""
    s.settimeout(0.5)
    end, i = time.monotonic() + deadline_s, 0
    while time.monotonic() < end:
        try:
            if trickle:
                s.send(trickle[i % len(trickle):i % len(trickle) + 1])
                i += 1
            if s.recv(65536) == b'':
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


# -- 15: duplicate keys ------------------------------------------------------------------------
@pytest.mark.parametrize('body', ['{"label": "../x", "label": "thumbs_up"}',
                                  '{"label": "thumbs_up", "label": "thumbs_down"}'])
def test_duplicate_json_keys_are_refused(serve, body):
    server, backend = serve()
    status, _, answer = post(server.port, '/api/collect', body)
    assert status == 400 and 'duplicate' in answer['error'], answer
    assert backend.calls == []


# -- 16: a body in several TCP segments ---------------------------------------------------------
def test_a_body_split_across_tcp_segments_is_read_whole(serve):
    server, backend = serve()
    body = b'{"label": "thumbs_down"}'
    s = raw(server.port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.sendall(b'POST /api/collect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: '
                  b'application/json\r\nContent-Length: ' + str(len(body)).encode() +
                  b'\r\n\r\n' + body[:9])
        time.sleep(0.3)  # the second segment comes later, as on a real network
        s.sendall(body[9:])
        answer = read_answer(s)
    finally:
        s.close()
    assert answer.startswith(b'HTTP/1.1 200'), answer[:300]
    assert backend.calls == [('collect', 'thumbs_down')]


# -- 14: slow clients are cut off ---------------------------------------------------------------
def test_headers_trickled_slowly_are_cut_off(serve):
    server, _ = serve(header_timeout=2.0)
    s = raw(server.port)
    try:
        s.sendall(b'GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n')
        # the default aiohttp keeps such a connection for an hour; 30 s is plenty here
        assert closed_by_server(s, 30.0, trickle=b'X-Slow: aaaaaaaaaaaaaaaa\r\n'), \
            'a client trickling its headers held the connection'
    finally:
        s.close()


def test_a_body_that_never_completes_is_cut_off(serve):
    server, backend = serve(body_timeout=2.0)
    s = raw(server.port)
    try:
        s.sendall(b'POST /api/collect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: '
                  b'application/json\r\nContent-Length: 30\r\n\r\n{"label"')
        answer = read_answer(s, 30.0)
    finally:
        s.close()
    assert answer.startswith(b'HTTP/1.1 408'), answer[:300]
    assert backend.calls == []


def test_oversized_headers_are_refused(serve):
    server, _ = serve()
    status, _, _ = request(server.port, 'GET', '/api/state', headers={'X-Big': 'a' * 20000})
    assert status in (400, 431)
    many = {f'X-H{i}': 'a' for i in range(200)}
    status, _, _ = request(server.port, 'GET', '/api/state', headers=many)
    assert status in (400, 431)


# -- 12 and 13: the cookie belongs to one node instance; the token never rides in a URL ---------
def _exchange(port, token=TOKEN):
    status, headers, _ = request(port, 'GET', f'/?token={token}')
    assert status == 302 and headers['Location'] == '/'
    cookie = headers['Set-Cookie']
    assert 'HttpOnly' in cookie and 'SameSite=Strict' in cookie, cookie
    return cookie.split(';')[0]  # name=value


def test_the_cookie_is_scoped_to_this_node_and_is_not_the_token(serve):
    a, _ = serve(token=TOKEN)
    b, _ = serve(token=TOKEN + '-b')
    cookie_a, cookie_b = _exchange(a.port), _exchange(b.port, TOKEN + '-b')
    assert TOKEN not in cookie_a, 'the cookie carries the token itself to every port'
    assert cookie_a.split('=')[0] != cookie_b.split('=')[0], 'both nodes use one cookie name'
    # a browser sends every cookie of the host to every port: both pages keep working
    both = {'Cookie': f'{cookie_a}; {cookie_b}'}
    assert request(a.port, 'GET', '/api/state', headers=both)[0] == 200
    assert request(b.port, 'GET', '/api/state', headers=both)[0] == 200
    # and one node's cookie opens nothing on the other
    assert request(b.port, 'GET', '/api/state', headers={'Cookie': cookie_a})[0] in (401, 403)


def test_the_token_is_not_accepted_in_urls_other_than_the_first_load(serve):
    server, _ = serve(token=TOKEN)
    for path in ('/api/state', '/ws', '/stream', '/snapshot'):
        status, _, answer = request(server.port, 'GET', f'{path}?token={TOKEN}')
        assert status in (400, 401), (path, status)
        assert 'url' in str(answer).lower(), answer
    assert request(server.port, 'GET', '/api/state',
                   headers={'Authorization': f'token {TOKEN}'})[0] == 200
    cookie = _exchange(server.port)
    assert request(server.port, 'GET', '/api/state', headers={'Cookie': cookie})[0] == 200


# -- 17: the no-token mode says so ---------------------------------------------------------------
def test_the_no_token_mode_is_said_on_the_page_state(serve):
    server, _ = serve()
    assert server.warning and 'every program' in server.warning
    status, _, state = request(server.port, 'GET', '/api/state')
    assert status == 200 and state['access']['token'] is False
    assert state['access']['warning'] == server.warning
    with_token, _ = serve(token=TOKEN)
    assert with_token.warning == ''
    state = request(with_token.port, 'GET', '/api/state',
                    headers={'Authorization': f'token {TOKEN}'})[2]
    assert state['access'] == {'token': True, 'warning': ''}


# -- 5: many viewers, slow viewers dropped, capacity said -----------------------------------------
def _stream(port, timeout=30.0):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    conn.request('GET', '/stream')
    return conn, conn.getresponse()


def _frames_read(response, count: int) -> int:
    """Read ``count`` MJPEG parts (or fewer when the stream ends)."""
    n = 0
    while n < count:
        line = response.fp.readline()
        if not line:
            break
        if line.startswith(b'Content-Length:'):
            size = int(line.split(b':')[1])
            response.fp.readline()
            response.fp.read(size)
            n += 1
    return n


def test_ten_viewers_each_get_the_video(serve):
    server, _ = serve(camera=True)
    streams = [_stream(server.port) for _ in range(10)]
    try:
        assert [r.status for _, r in streams] == [200] * 10
        got = [0] * 10
        threads = [threading.Thread(target=lambda i=i: got.__setitem__(
            i, _frames_read(streams[i][1], 20))) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert got == [20] * 10
    finally:
        for conn, _ in streams:
            conn.close()


def _stalled_stream(port) -> socket.socket:
    """A /stream client that stops reading at once (a closed laptop lid)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(('127.0.0.1', port))
    s.sendall(b'GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    return s


def test_viewers_that_stop_reading_are_dropped_and_free_their_slots(serve):
    server, _ = serve(camera=True, max_viewers=2, write_timeout=1.0)
    stalled = [_stalled_stream(server.port) for _ in range(2)]
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            conn, r = _stream(server.port)
            status = r.status
            if status == 200:
                assert _frames_read(r, 3) == 3
                conn.close()
                break
            conn.close()
            time.sleep(0.5)
        assert status == 200, 'two clients that stopped reading still hold every video slot'
    finally:
        for s in stalled:
            s.close()


def test_a_viewer_refused_for_capacity_is_told_why(serve):
    server, _ = serve(camera=True, max_viewers=1)
    conn, r = _stream(server.port)
    try:
        assert r.status == 200
        status, _, answer = request(server.port, 'GET', '/stream')
        assert status == 503 and 'video streams' in answer['error']
        state = request(server.port, 'GET', '/api/state')[2]
        assert state['video_capacity'] == {'viewers': 1, 'max_viewers': 1}
    finally:
        conn.close()


def test_a_cross_site_video_request_takes_no_slot(serve):
    server, _ = serve(camera=True)
    status, _, answer = request(server.port, 'GET', '/stream',
                                headers={'Sec-Fetch-Site': 'cross-site'})
    assert status == 403 and 'cross-site' in answer['error']



# -- 8: the limits the nodes keep ----------------------------------------------------------
def test_epochs_over_the_trainers_maximum_are_refused_with_the_limit(serve):
    server, backend = serve()
    status, _, answer = post(server.port, '/api/train', {'epochs': 101, 'start': 'auto'})
    assert status == 400 and '1..100' in answer['error'] and 'max_epochs' in answer['error']
    assert post(server.port, '/api/train', {'epochs': 100, 'start': 'auto'})[0] == 200
    assert backend.calls == [('train', 100, 'auto')]


# -- 9: hold to record at the rate the user asks ------------------------------------------------
def test_hold_to_record_takes_the_rate_the_user_asks(serve):
    server, backend = serve()
    status, _, _ = post(server.port, '/api/record/start', {'label': 'thumbs_up', 'fps': 15})
    assert status == 200 and backend.calls == [('record', 'thumbs_up', 15.0)]
    for fps in (0, 31, -1, 'x'):
        status, _, answer = post(server.port, '/api/record/start',
                                 {'label': 'thumbs_up', 'fps': fps})
        assert status == 400, (fps, answer)
    assert len(backend.calls) == 1


# -- issue 16, item 4: the review queue ------------------------------------------------------------
def test_review_requests_are_checked_before_the_backend(serve):
    server, backend = serve()
    for body in ({'id': -1, 'label': 'thumbs_up', 'discard': False},
                 {'id': '4', 'label': 'thumbs_up', 'discard': False},
                 {'id': 4, 'label': '../x', 'discard': False},
                 {'id': 4, 'label': 'thumbs_up'}):
        assert post(server.port, '/api/review', body)[0] == 400, body
    assert request(server.port, 'GET', '/review/abc')[0] == 400
    assert backend.calls == []
    assert post(server.port, '/api/review', {'id': 4, 'label': '', 'discard': True})[0] == 200
    assert post(server.port, '/api/review',
                {'id': 4, 'label': 'thumbs_up', 'discard': False})[0] == 200
    assert backend.calls == [('label_review', 4, '', True),
                             ('label_review', 4, 'thumbs_up', False)]


def test_a_new_class_name_is_checked_before_the_backend(serve):
    """Issue 19, item 10 (add a class): unsafe, duplicate and malformed names are refused
    with the reason before any node is asked; a safe new name reaches the backend once."""
    server, backend = serve()
    for body in ({'name': '../../x'}, {'name': ''}, {'name': 'a' * 65}, {'name': 'ok sign'},
                 {'name': '\uff41'}, {'name': 'thumbs_up'}, {'name': 3}, {},
                 {'name': 'ok', 'extra': 1}):
        status, _, answer = post(server.port, '/api/classes', body)
        assert status == 400 and answer['error'], body
    assert 'already a class' in post(server.port, '/api/classes', {'name': 'thumbs_up'})[2][
        'error']
    assert backend.calls == []
    assert post(server.port, '/api/classes', {'name': 'ok_sign'})[0] == 200
    assert backend.calls == [('add_class', 'ok_sign')]


# -- issue 19, item 10: the dataset import's upload ----------------------------------------------
ZIP = {'Content-Type': 'application/zip'}


def test_an_upload_reaches_the_backend_whole(serve):
    server, backend = serve()
    body = bytes(range(256)) * 5000  # 1.28 MB: several pieces, past nothing
    status, _, answer = request(server.port, 'POST', '/api/dataset/import', body, ZIP)
    assert status == 200 and answer['added'] == 0, answer
    assert backend.calls == [('import_dataset', len(body), hashlib.sha256(body).hexdigest())]


def test_an_upload_over_the_limit_is_refused_before_it_is_read(serve):
    server, backend = serve()
    s = raw(server.port)
    try:
        s.sendall(b'POST /api/dataset/import HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                  b'Content-Type: application/zip\r\nContent-Length: ' +
                  str(MAX_UPLOAD + 1).encode() + b'\r\n\r\nPK')
        answer = read_answer(s)
    finally:
        s.close()
    assert answer.startswith(b'HTTP/1.1 413'), answer[:300]
    assert backend.calls == []


@pytest.mark.parametrize('headers, status', [
    ({'Content-Type': 'application/json'}, 415),                  # not the upload's type
    ({'Content-Type': 'multipart/form-data; boundary=x'}, 415),   # what a cross-site form sends
    ({'Content-Type': 'text/plain'}, 415),
    ({**ZIP, 'Origin': 'http://evil.example'}, 403),
    ({**ZIP, 'Sec-Fetch-Site': 'cross-site'}, 403),
    ({**ZIP, 'Host': 'evil.example'}, 403),                       # DNS rebinding
])
def test_an_upload_keeps_the_access_rules_of_every_post(serve, headers, status):
    server, backend = serve()
    assert request(server.port, 'POST', '/api/dataset/import', b'PK\x03\x04',
                   headers)[0] == status
    assert backend.calls == []


def test_the_upload_type_is_only_accepted_for_the_import(serve):
    server, backend = serve()
    assert request(server.port, 'POST', '/api/collect', b'{"label": "thumbs_up"}', ZIP)[0] \
        == 415
    assert backend.calls == []


def test_files_need_the_token_and_are_not_given_to_other_sites(serve):
    server, backend = serve(token=TOKEN)
    for method, path in (('POST', '/api/dataset/import'), ('GET', '/api/dataset/export'),
                         ('GET', '/api/model/download')):
        assert request(server.port, method, path, b'PK' if method == 'POST' else None,
                       ZIP)[0] == 401, path
        auth = {**ZIP, 'Authorization': f'token {TOKEN}', 'Sec-Fetch-Site': 'cross-site'}
        assert request(server.port, method, path, b'PK' if method == 'POST' else None,
                       auth)[0] == 403, path
    assert backend.calls == []
    status, _, _ = request(server.port, 'POST', '/api/dataset/import', b'PK',
                           {**ZIP, 'Authorization': f'token {TOKEN}'})
    assert status == 200 and backend.calls[0][:2] == ('import_dataset', 2)


def test_an_empty_upload_is_refused(serve):
    server, backend = serve()
    status, _, answer = request(server.port, 'POST', '/api/dataset/import', b'', ZIP)
    assert status == 400 and 'empty' in answer['error']
    assert backend.calls == []
