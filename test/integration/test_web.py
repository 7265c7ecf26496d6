"""The web page in a real browser (Debian's chromium driven by Playwright) against the real
nodes over the real middleware, the camera replaying real photos at 640x480; plus hostile HTTP
requests and the access token.

An MJPEG <img> never finishes loading: the tests wait for ``domcontentloaded`` and then for
the image's ``naturalWidth``, never for network idle.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
from pathlib import Path

import pytest

from gesture_interfaces.msg import ModelInfo

from gesture_classifier.bringup import NODES
from gesture_classifier.nodes.common import MODEL_QOS

from .conftest import (CLASSES, THUMBS, assert_policy_matches_graph, graph_overrides,
                       running_graph, seed_dataset, start_nodes)

pytestmark = pytest.mark.timeout(900)

CHROMIUM = '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']
SEEDED = 16  # real photos per class in the dataset before the page collects
EPOCHS = 8
#: ImageNet-like stand-in weights (../shared/models/README.md): a file a user would pass as
#: initial_weights; with them 8 epochs (a few seconds each here) tell thumbs up from down.
STANDIN = THUMBS.parents[1] / 'models' / 'resnet18_imagenet_standin.pth'
URL_LINE = re.compile(r'\[web\]: serving the page on .*?(?:port (\d+)|:(\d+)/)')


def wait_for_port(log: Path, timeout: float = 60.0) -> int:
    """The port the web node logged it listens on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = URL_LINE.search(log.read_text())
        if m:
            return int(m.group(1) or m.group(2))
        time.sleep(0.2)
    raise AssertionError(f'the web node did not log its URL:\n{log.read_text()[-3000:]}')


def screenshot(pg, name: str, full_page: bool = False) -> None:
    """Save a screenshot for the README when GC_WEB_SCREENSHOTS names a folder."""
    folder = os.environ.get('GC_WEB_SCREENSHOTS')
    if folder:
        pg.screenshot(path=str(Path(folder) / f'{name}.jpg'), type='jpeg', quality=80,
                      full_page=full_page)


def wait_js(pg, expression: str, timeout: float = 20.0):
    """Poll a JavaScript expression in the page until it is truthy. (Playwright's
    wait_for_function evaluates its predicate with eval(), which the page's
    Content-Security-Policy forbids, as it should; page.evaluate goes through the DevTools
    protocol and is allowed.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = pg.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {expression}')
        time.sleep(0.05)


def request(port: int, method: str, path: str, body: bytes | str | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
    """(status, JSON answer) of one plain HTTP request to the web node."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, {'raw': data[:200]}


def post(port: int, path: str, payload, **headers) -> tuple[int, dict]:
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return request(port, 'POST', path, body,
                   {'Content-Type': 'application/json', **headers})


@pytest.fixture(scope='module')
def browser():
    sync_api = pytest.importorskip('playwright.sync_api')
    if not Path(CHROMIUM).exists():
        pytest.skip(f'{CHROMIUM} missing: scripts/setup.sh installs it with apt (as root)')
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope='module')
def web(tmp_path_factory):
    """The four nodes plus the web node on a free port; the camera replays the real thumbs-up
    photos at 640x480 and the page may switch it to either class's photos."""
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    tmp = tmp_path_factory.mktemp('web')
    data_dir = tmp / 'data'
    seed_dataset(data_dir, SEEDED)
    # the pretrained path a user takes with a weights file: the ImageNet-like stand-in
    weights = str(STANDIN) if STANDIN.is_file() else 'none'
    overrides = graph_overrides(
        data_dir, camera=dict(source=str(THUMBS / 'thumbs_up'), width=640, height=480,
                              rate=15.0, loop=True, reopen_delay=0.2),
        trainer=dict(val_fraction=0.25, initial_weights=weights))
    overrides['web'] = dict(data_dir=str(data_dir), task='thumbs', classes=list(CLASSES),
                            port=0, camera_sources=[str(THUMBS / c) for c in CLASSES] +
                            [str(tmp / 'no_such_camera')])
    log = tmp / 'nodes.log'
    with running_graph(overrides, data_dir, log, names=[*NODES, 'web']) as system:
        system.client.wait_for_image(timeout=30)
        system.port = wait_for_port(log)
        yield system


@pytest.fixture
def page(browser, web):
    context = browser.new_context(viewport={'width': 1280, 'height': 900})
    pg = context.new_page()
    pg.goto(f'http://127.0.0.1:{web.port}/', wait_until='domcontentloaded')
    pg.wait_for_selector('#connection:text("live")', timeout=20000)
    # live is the open WebSocket; the first state (task, classes, cards) is drawn after it
    wait_js(pg, "document.getElementById('task').textContent !== '' && "
                "document.querySelectorAll('#classes .class').length > 0", 20)
    yield pg
    context.close()


def bar_values(pg) -> dict[str, float]:
    return pg.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#bars .bar')]
        .filter(b => b.dataset.value !== '').map(b => [b.dataset.label,
                                                        Number(b.dataset.value)]))""")


# -- the page ---------------------------------------------------------------------------------
def test_page_shows_the_live_camera_video(web, page):
    wait_js(page, "document.getElementById('video').naturalWidth > 0", 30)
    size = page.evaluate("[document.getElementById('video').naturalWidth, "
                         "document.getElementById('video').naturalHeight]")
    assert size == [640, 480]
    # real pixels: draw the current MJPEG frame and look at them
    stats = page.evaluate("""() => {
        const img = document.getElementById('video');
        const c = document.createElement('canvas'); c.width = 64; c.height = 48;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0, 64, 48);
        const d = g.getImageData(0, 0, 64, 48).data; let s = 0, s2 = 0, n = 0;
        for (let i = 0; i < d.length; i += 4) { const v = d[i + 1]; s += v; s2 += v * v; n++; }
        const m = s / n; return [m, Math.sqrt(s2 / n - m * m)]; }""")
    assert 20 < stats[0] < 235 and stats[1] > 10, f'the video looks blank: mean/std {stats}'
    wait_js(page, "document.getElementById('camera-status').textContent"
                           ".includes('640x480')", 10)
    assert str(THUMBS / 'thumbs_up') in page.text_content('#camera-status')
    assert page.is_hidden('#stale')
    web.alive()


def test_add_button_collects_the_current_frame(web, page):
    dataset = web.dataset / 'thumbs_up'
    before = len(list(dataset.glob('*.jpg')))
    row = page.locator('#classes .class[data-label="thumbs_up"]')
    for expected in (before + 1, before + 2):
        time.sleep(0.2)  # under the collector's max_collect_rate
        row.locator('button.add').click()
        wait_js(page,
            f"""document.querySelector('#classes .class[data-label="thumbs_up"]')
                .dataset.count === '{expected}'""", 15)
    assert len(list(dataset.glob('*.jpg'))) == before + 2
    assert row.locator('.count').text_content() == f'{before + 2} samples'


def _count(page, label: str) -> int:
    value = page.get_attribute(f'#classes .class[data-label="{label}"]', 'data-count')
    return int(value) if value else -1


def test_training_shows_progress_to_the_end_and_the_new_model(web, page):
    gc = web.client
    models = []
    sub = gc.node.create_subscription(ModelInfo, 'model', models.append, MODEL_QOS)
    try:
        page.fill('#epochs', str(EPOCHS))
        page.click('#train')
        wait_js(page, "document.getElementById('train-status').dataset.state "
                               "=== 'running'", 20)
        seen = set()
        deadline = time.monotonic() + 600  # about 30 s here; minutes on a loaded machine
        while time.monotonic() < deadline:
            state = page.get_attribute('#train-status', 'data-state')
            seen.add(round(float(page.evaluate("document.getElementById('progress').value")),
                           2))
            if state not in ('sending', 'running'):
                break
            time.sleep(0.1)
        assert state == 'succeeded', page.text_content('#train-result')
        model_id = page.text_content('#train-result').split()[1].rstrip(':')
        deadline = time.monotonic() + 20
        while not any(m.model_id == model_id for m in models) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        gc.node.destroy_subscription(sub)
    assert any(m.model_id == model_id for m in models), 'the page shows a model the trainer ' \
        'did not announce'
    assert page.evaluate("document.getElementById('progress').value") == 1
    assert len([v for v in seen if 0 < v < 1]) >= 2, f'no progress seen in between: {seen}'
    assert f'epoch {EPOCHS}/{EPOCHS}' in page.text_content('#train-status')
    wait_js(page, f"document.getElementById('model-id').textContent === "
                           f"'{model_id}'", 30)
    history = page.evaluate("fetch('/api/state').then(r => r.json())"
                            ".then(s => s.training.history)")
    assert [h['epoch'] for h in history] == list(range(1, EPOCHS + 1))
    assert all('loss' in h and 'accuracy' in h for h in history)
    web.alive()


def _mean_bars(page, seconds: float) -> dict[str, float]:
    sums, n = dict.fromkeys(CLASSES, 0.0), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        values = bar_values(page)
        if set(values) == set(CLASSES):
            for c in CLASSES:
                sums[c] += values[c]
            n += 1
        time.sleep(0.1)
    assert n, 'no probability bars shown'
    return {c: v / n for c, v in sums.items()}


def test_probability_bars_move_when_the_camera_switches_class(web, page):
    # after test_training_...: the classifier has a model
    wait_js(page, "document.querySelectorAll('#bars .bar[data-value]:not("
                           "[data-value=\"\"])').length === 2", 30)
    means = {}
    for label in ('thumbs_down', 'thumbs_up'):
        page.select_option('#source', str(THUMBS / label))
        page.click('#switch')
        wait_js(page, f"document.getElementById('camera-status').textContent"
                               f".includes('{label}')", 10)
        time.sleep(1.5)  # frames of the new source reach the classifier
        means[label] = _mean_bars(page, 3.0)
    shift = means['thumbs_up']['thumbs_up'] - means['thumbs_down']['thumbs_up']
    assert shift > 0.05, f'bars did not move between the classes: {means}'
    web.alive()


def _classifier_params(web, *names) -> list[float]:
    """The classifier's double parameters ``names``, asked over ROS (not through the page)."""
    from rcl_interfaces.srv import GetParameters

    from gesture_classifier.client import wait_future
    client = web.client.node.create_client(GetParameters, 'classifier/get_parameters')
    try:
        assert client.wait_for_service(timeout_sec=10)
        res = wait_future(client.call_async(GetParameters.Request(names=list(names))), 10,
                          'classifier/get_parameters')
    finally:
        web.client.node.destroy_client(client)
    return [v.double_value for v in res.values]


def _slide(page, name: str, value: float) -> None:
    """Move a range input as a user's drag ends: value, then input and change events."""
    page.evaluate(f"""() => {{ const e = document.getElementById('{name}');
        e.value = '{value}'; e.dispatchEvent(new Event('input', {{bubbles: true}}));
        e.dispatchEvent(new Event('change', {{bubbles: true}})); }}""")


def test_gesture_sliders_set_the_classifier_and_show_the_stable_gesture(web, page):
    # the page shows the classifier's own values once it has asked for them
    wait_js(page, "!document.getElementById('threshold').disabled", 20)
    threshold, smoothing = _classifier_params(web, 'gesture_threshold', 'gesture_smoothing')
    assert float(page.input_value('#threshold')) == pytest.approx(threshold)
    assert float(page.input_value('#smoothing')) == pytest.approx(smoothing)
    try:
        # a low threshold: the trained model's top class on the camera's photos becomes
        # the stable gesture, which the classifier publishes on `gestures`
        _slide(page, 'threshold', 0.05)
        wait_js(page, "document.getElementById('threshold-value').textContent === '0.05'", 5)
        deadline = time.monotonic() + 20
        while _classifier_params(web, 'gesture_threshold') != [pytest.approx(0.05)]:
            assert time.monotonic() < deadline, 'the classifier did not get the threshold'
            time.sleep(0.2)
        label = wait_js(page, "['thumbs_up', 'thumbs_down'].includes(document.getElementById("
                              "'gesture-label').textContent) && document.getElementById("
                              "'gesture-label').textContent", 30)
        assert label in CLASSES
        _slide(page, 'smoothing', 0.9)
        deadline = time.monotonic() + 20
        while _classifier_params(web, 'gesture_smoothing') != [pytest.approx(0.9)]:
            assert time.monotonic() < deadline, 'the classifier did not get the smoothing'
            time.sleep(0.2)
        # out of range, NaN, mistyped: refused before ROS; the classifier keeps its values
        port = web.port
        for body, words in (({'threshold': 2, 'smoothing': 0.5}, '[0, 1]'),
                            ('{"threshold": NaN, "smoothing": 0.5}', '[0, 1]'),
                            ({'threshold': 0.5, 'smoothing': 1.0}, '[0, 0.99]'),
                            ({'threshold': '0.5', 'smoothing': 0.5}, 'must be float'),
                            ({'threshold': True, 'smoothing': 0.5}, 'must be float'),
                            ({'threshold': 0.5}, 'exactly')):
            status, answer = post(port, '/api/gesture', body)
            assert status == 400 and words in answer['error'], (body, status, answer)
        assert _classifier_params(web, 'gesture_threshold', 'gesture_smoothing') == \
            [pytest.approx(0.05), pytest.approx(0.9)]
        status, answer = post(port, '/api/gesture', {'threshold': 1, 'smoothing': 0})
        assert status == 200 and answer == {'threshold': 1.0, 'smoothing': 0.0}
    finally:
        post(web.port, '/api/gesture', {'threshold': threshold, 'smoothing': smoothing})
    web.alive()


def _state(port: int) -> dict:
    status, state = request(port, 'GET', '/api/state')
    assert status == 200
    return state


def test_train_more_continues_and_an_earlier_model_can_be_selected(web, page):
    # the page is live before its first state is drawn: wait for the model the state names
    first = wait_js(page, "(t => t !== 'none yet' && t)(document.getElementById('model-id')"
                          ".textContent)", 20)
    page.fill('#epochs', '1')
    page.select_option('#start', 'continue')
    page.click('#train')
    wait_js(page, "document.getElementById('train-status').dataset.state === 'running'", 20)
    wait_js(page, "!['sending', 'running'].includes("
                  "document.getElementById('train-status').dataset.state)", 300)
    training = _state(web.port)['training']
    assert training['state'] == 'succeeded', training.get('message')
    assert training['continued'] and training['parent_model_id'] == first
    assert training['total_epochs'] == EPOCHS + 1
    second = training['model_id']
    # both versions listed, the new one in use; switch back to the first from the page
    wait_js(page, f"document.querySelectorAll('#models tr[data-model-id]').length >= 2 && "
                  f"document.querySelector('#models tr[data-model-id=\"{second}\"] .badge')", 30)
    page.locator(f'#models tr[data-model-id="{first}"] button.use').click()
    gc = web.client
    p = gc.wait_for_prediction(lambda p: p.model_id == first, timeout=60)
    assert p.model_id == first
    wait_js(page, f"document.querySelector('#models tr[data-model-id=\"{first}\"] .badge')",
            20)
    wait_js(page, f"document.getElementById('model-id').textContent === '{first}'", 20)
    web.alive()


def test_evaluate_shows_the_confusion_matrix_and_misclassified_samples(web, page):
    page.click('#evaluate')
    wait_js(page, "document.getElementById('eval-status').dataset.state === 'succeeded'", 120)
    ev = _state(web.port)['evaluation']
    for split in ('validation', 'training'):
        figures = ev[split]
        assert figures['split'] == split and figures['class_names'] == list(CLASSES)
        assert sum(figures['confusion']) == figures['images'] > 0
        wrong = figures['images'] - sum(figures['confusion'][i * 3] for i in range(2))
        assert figures['misclassified_total'] == wrong
        shown = page.evaluate(f"[...document.querySelectorAll('#eval-splits "
                              f".split[data-split={split}] table.confusion td')]"
                              f".map(td => td.textContent)")
        # 2 rows of (2 counts + recall), then the precision row
        assert [int(shown[0]), int(shown[1]), int(shown[3]), int(shown[4])] == \
            figures['confusion']
    web.alive()


def test_hold_to_record_saves_several_distinct_frames(web, page):
    dataset = web.dataset / 'thumbs_up'
    wait_js(page, "document.querySelector('#classes .class[data-label=thumbs_up]')"
                  ".dataset.count !== ''", 20)
    before_files = set(dataset.glob('*.jpg'))
    before = _count(page, 'thumbs_up')
    hold = page.locator('#classes .class[data-label="thumbs_up"] button.hold')
    hold.dispatch_event('pointerdown', {'pointerId': 1, 'isPrimary': True})
    wait_js(page, "document.getElementById('dataset-status').textContent"
                  ".includes('recording')", 10)
    time.sleep(2.0)  # held for 2 s: about 10 frames at record_interval 0.2 s
    hold.dispatch_event('pointerup', {'pointerId': 1, 'isPrimary': True})
    page.wait_for_selector('#toast:text("frames recorded")', timeout=15000)
    new = set(dataset.glob('*.jpg')) - before_files
    assert len(new) >= 3, f'only {len(new)} frames recorded in 2 s'
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in new}
    assert len(digests) == len(new), 'a frame was saved twice'
    wait_js(page, f"document.querySelector('#classes .class[data-label=thumbs_up]')"
                  f".dataset.count === '{before + len(new)}'", 15)
    # the newest samples are shown as real thumbnails
    wait_js(page, "[...document.querySelectorAll("
                  "'#classes .class[data-label=thumbs_up] .thumb img')]"
                  ".filter(i => i.naturalWidth > 0).length >= 3", 15)
    page.wait_for_selector('#toast', state='hidden', timeout=10000)
    screenshot(page, 'web-desktop', full_page=True)
    web.alive()


def test_delete_undo_and_restore_change_the_counts(web, page):
    label = 'thumbs_down'
    row = f'#classes .class[data-label="{label}"]'
    wait_js(page, f"document.querySelector('{row}').dataset.count !== ''", 20)
    n = _count(page, label) + 1
    page.locator(f'{row} button.add').click()
    wait_js(page, f"document.querySelector('{row}').dataset.count === '{n}'", 15)
    wait_js(page, f"document.querySelectorAll('{row} .thumb').length >= 1", 15)
    files = set((web.dataset / label).glob('*.jpg'))
    page.locator(f'{row} .thumb button.delete').first.click()
    wait_js(page, f"document.querySelector('{row}').dataset.count === '{n - 1}'", 15)
    assert len(set((web.dataset / label).glob('*.jpg'))) == len(files) - 1
    time.sleep(0.2)
    page.locator(f'{row} button.undo').click()
    wait_js(page, f"document.querySelector('{row}').dataset.count === '{n - 2}'", 15)
    assert len(set((web.dataset / label).glob('*.jpg'))) == len(files) - 2
    page.click('#restore')  # the last batch: the undone sample
    wait_js(page, f"document.querySelector('{row}').dataset.count === '{n - 1}'", 15)
    assert len(set((web.dataset / label).glob('*.jpg'))) == len(files) - 1
    web.alive()


def test_page_fits_a_phone_screen(browser, web):
    context = browser.new_context(viewport={'width': 360, 'height': 740}, is_mobile=True,
                                  has_touch=True)
    try:
        pg = context.new_page()
        pg.goto(f'http://127.0.0.1:{web.port}/', wait_until='domcontentloaded')
        wait_js(pg, "document.getElementById('video').naturalWidth > 0", 30)
        wide = pg.evaluate("""[...document.querySelectorAll('body *')].filter(
            e => e.getBoundingClientRect().right > 360.5).map(e => e.tagName + '#' + e.id +
            '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""")
        assert pg.evaluate('document.documentElement.scrollWidth') <= 360, wide
        wait_js(pg, "document.getElementById('model-id').textContent !== 'none yet'", 20)
        screenshot(pg, 'web-phone')
        box = pg.locator('#classes button.add').first.bounding_box()
        assert box['width'] >= 40 and box['height'] >= 40, 'touch target too small'
        pg.locator('#classes .class[data-label="thumbs_down"] button.add').tap()
        wait_js(pg, "document.querySelector('#classes .class[data-label=thumbs_down]')"
                    ".dataset.count !== ''", 15)
    finally:
        context.close()


def test_messages_are_shown_as_text_never_as_markup(web, page):
    hostile = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    page.evaluate(f'post("/api/collect", {{label: {json.dumps(hostile)}}})')
    page.wait_for_selector('#toast.error', timeout=10000)
    assert '<b>bold</b>' in page.text_content('#toast')
    assert page.locator('#toast img, #toast b').count() == 0
    assert page.evaluate('window.pwned') is None


def test_lost_camera_shows_as_stale_input_and_a_notice(web, page):
    wait_js(page, "document.getElementById('video').naturalWidth > 0", 30)
    page.select_option('#source', str(web.data_dir.parent / 'no_such_camera'))
    page.click('#switch')
    try:
        page.wait_for_selector('#stale:not([hidden])', timeout=20000)
        assert 'stale' in page.text_content('#stale')
        assert page.text_content('#overlay') == '', 'an old prediction is shown as live'
        # the camera's warning reaches the page through /rosout
        page.wait_for_selector('#notices li.error:has-text("camera")', timeout=20000)
    finally:
        page.select_option('#source', str(THUMBS / 'thumbs_up'))
        page.click('#switch')
    page.wait_for_selector('#stale', state='hidden', timeout=20000)
    web.alive()


def test_sros2_policy_names_exactly_the_web_nodes_interfaces(web):
    assert_policy_matches_graph(web.client.node, 'web')


# -- hostile HTTP ---------------------------------------------------------------------------
def test_hostile_requests_are_refused_and_nothing_reaches_ros(web):
    port, dataset = web.port, web.dataset
    files_before = sorted(p.name for p in dataset.rglob('*'))
    cases = [
        (post(port, '/api/collect', {'label': '../../x'}), 400, 'not one of the classes'),
        (post(port, '/api/collect', {'label': 'thumbs_up', 'x': 1}), 400, 'exactly'),
        (post(port, '/api/collect', {}), 400, 'exactly'),
        (post(port, '/api/collect', {'label': 7}), 400, 'must be str'),
        (post(port, '/api/collect', ['thumbs_up']), 400, 'JSON object'),
        (post(port, '/api/collect', '{"label": "thumbs_up"'), 400, 'not JSON'),
        (post(port, '/api/collect', b'\xff\xfe'), 400, 'not JSON'),
        (post(port, '/api/collect', json.dumps({'label': 'a' * 10000})), 413, 'at most'),
        (post(port, '/api/train', {'epochs': '10', 'start': 'auto'}), 400, 'must be int'),
        (post(port, '/api/train', {'epochs': True, 'start': 'auto'}), 400, 'must be int'),
        (post(port, '/api/train', {'epochs': 0, 'start': 'auto'}), 400, '1..10000'),
        (post(port, '/api/train', {'epochs': 10**12, 'start': 'auto'}), 400, '1..10000'),
        (post(port, '/api/train', {'epochs': 1, 'start': 'x'}), 400, 'start must be'),
        (post(port, '/api/train', {'epochs': 1}), 400, 'exactly'),
        (post(port, '/api/delete', {'id': '../../etc/passwd'}), 400, 'no such sample'),
        (post(port, '/api/undo', {'label': '..'}), 400, 'not one of the classes'),
        (post(port, '/api/record/start', {'label': 'x/y'}), 400, 'not one of the classes'),
        (request(port, 'GET', '/thumb/0123456789abcdef'), 404, 'no such sample'),
        (post(port, '/api/camera', {'source': 'videotestsrc ! filesink location=/tmp/x'}), 400,
         'camera_sources'),
        (request(port, 'POST', '/api/collect', 'label=thumbs_up',
                 {'Content-Type': 'application/x-www-form-urlencoded'}), 415, 'json'),
        (post(port, '/api/collect', {'label': 'thumbs_up'}, Origin='http://evil.example'),
         403, 'cross-origin'),
        (request(port, 'GET', '/api/state', headers={'Host': 'evil.example:80'}), 403,
         'only localhost'),
        (request(port, 'GET', '/stream?fps=abc'), 400, 'fps'),
        (request(port, 'GET', '/snapshot?width=99999'), 400, 'width'),
        (request(port, 'GET', '/static/../../setup.py'), 404, ''),
        (request(port, 'GET', '/static/nodes.log'), 404, ''),
    ]
    for (status, answer), want, words in cases:
        assert status == want, (status, answer)
        assert words.lower() in str(answer).lower(), (want, answer)
    assert sorted(p.name for p in dataset.rglob('*')) == files_before
    assert not (web.data_dir.parent / 'x').exists() and not Path('/tmp/x').exists()
    status, state = request(port, 'GET', '/api/state')
    assert status == 200 and state['camera']['source'] in [str(THUMBS / c) for c in CLASSES]
    web.alive()


def _web_alone(tmp_path, **params):
    """Only a web node (nothing else is needed to check access), logging to a file."""
    log = tmp_path / 'web.log'
    out = open(log, 'w')
    overrides = {'web': dict(data_dir=str(tmp_path), port=0, **params)}
    return start_nodes(['web'], overrides, out), log, out


def test_token_is_required_when_set_and_the_page_works_with_it(browser, tmp_path):
    token = 'test-token-0123456789abcdef'
    group, log, out = _web_alone(tmp_path, token=token)
    try:
        port = wait_for_port(log)
        assert token not in log.read_text(), 'a token given as a parameter is not printed'
        assert request(port, 'GET', '/api/state')[0] == 401
        assert request(port, 'GET', '/')[0] == 401
        assert request(port, 'GET', '/api/state?token=wrong')[0] == 403
        assert post(port, '/api/train', {'epochs': 1, 'start': 'auto'})[0] == 401
        assert request(port, 'GET', '/api/state',
                       headers={'Authorization': f'token {token}'})[0] == 200
        context = browser.new_context()
        try:
            pg = context.new_page()
            pg.goto(f'http://127.0.0.1:{port}/?token={token}', wait_until='domcontentloaded')
            assert pg.url == f'http://127.0.0.1:{port}/', 'the token stays in the address bar'
            pg.wait_for_selector('#connection:text("live")', timeout=20000)
            cookie = [c for c in context.cookies() if c['name'] == 'gc_token'][0]
            assert cookie['httpOnly'] and cookie['sameSite'] == 'Strict'
        finally:
            context.close()
    finally:
        group.stop()
        out.close()


def test_off_localhost_a_random_token_is_made_and_printed(tmp_path):
    group, log, out = _web_alone(tmp_path, host='0.0.0.0')
    try:
        port = wait_for_port(log)
        m = re.search(r'\?token=([A-Za-z0-9_-]{32})', log.read_text())
        assert m, log.read_text()
        assert request(port, 'GET', '/api/state')[0] == 401
        assert request(port, 'GET', f'/api/state?token={m.group(1)}')[0] == 200
    finally:
        group.stop()
        out.close()
