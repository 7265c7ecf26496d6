"""Compressed images over the real middleware: classifier and collector with
``image_transport: compressed`` on ``image_raw/compressed``, fed real JPEG photos, the camera's
own JPEG stream, and bad compressed data."""
from __future__ import annotations

import array
import time

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from gesture_classifier.ros.client import ClientError
from gesture_classifier.core.inference import Predictor
from gesture_classifier.ros.topics import IMAGE_PUB_QOS

from .conftest import (CLASSES, THUMBS, graph_overrides, graph_root, probe_model, running_graph,
                       wait_for_subscribers, wait_until)

pytestmark = [pytest.mark.graph, pytest.mark.timeout(300)]


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    root = graph_root(tmp_path_factory, 'compressed')
    model = probe_model(root / 'data' / 'thumbs' / 'models' / 'resnet18.pt', 0.9)
    overrides = graph_overrides(
        root / 'data', camera=dict(source=str(root / 'no_camera'), rate=10.0, width=0,
                                   height=0, jpeg_quality=90),
        classifier=dict(image_transport='compressed'),
        collector=dict(image_transport='compressed', max_collect_rate=1000.0))
    with running_graph(overrides, root / 'data', root / 'nodes.log',
                       watch_images=False) as system:
        pub = system.client.node.create_publisher(CompressedImage, 'image_raw/compressed',
                                                  IMAGE_PUB_QOS)
        wait_for_subscribers(pub, 2)
        yield dict(client=system.client, pub=pub, nodes=system.nodes, log=system.log,
                   model=model, root=root)


def _compressed(data: bytes, fmt: str, frame_id: str, client) -> CompressedImage:
    msg = CompressedImage(format=fmt, data=array.array('B', data))
    msg.header.frame_id = frame_id
    msg.header.stamp = client.node.get_clock().now().to_msg()
    return msg


def _classify(g, msg, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:  # best effort: resend until its prediction arrives
        g['pub'].publish(msg)
        try:
            return g['client'].wait_for_prediction(
                lambda p: p.header.frame_id == msg.header.frame_id, 0.5)
        except ClientError:
            if time.monotonic() > deadline:
                raise


def test_compressed_real_photos_are_classified_like_raw(graph):
    """The real JPEG files, sent as they are, give the probabilities PyTorch gives the same
    photos decoded from disk (the raw path): same labels, within 1e-5."""
    reference = Predictor.from_file(graph['model'], 'cpu', CLASSES)
    labels = []
    for label in CLASSES:
        for i, path in enumerate(sorted((THUMBS / label).glob('*.jpg'))[-10:]):
            msg = _compressed(path.read_bytes(), 'rgb8; jpeg compressed bgr8',
                              f'{label}-{i}', graph['client'])
            p = _classify(graph, msg)
            expected = reference.predict(cv2.imread(str(path)), 'bgr')
            assert np.abs(np.array(p.probabilities) - expected).max() <= 1e-5, path
            assert p.label == CLASSES[int(expected.argmax())]
            labels.append(p.label)
    assert set(labels) == set(CLASSES), 'both classes occur among the photos'


def test_png_is_classified_like_raw(graph):
    path = sorted((THUMBS / 'thumbs_down').glob('*.jpg'))[0]
    pixels = cv2.imread(str(path))
    ok, png = cv2.imencode('.png', pixels)
    p = _classify(graph, _compressed(png.tobytes(), 'png', 'png-0', graph['client']))
    expected = Predictor.from_file(graph['model'], 'cpu', CLASSES).predict(pixels, 'bgr')
    assert np.abs(np.array(p.probabilities) - expected).max() <= 1e-5


def test_collect_from_the_compressed_stream(graph):
    gc = graph['client']
    path = sorted((THUMBS / 'thumbs_up').glob('*.jpg'))[1]
    msg = _compressed(path.read_bytes(), 'jpeg', 'collect-0', gc)
    _classify(graph, msg)  # delivered to both subscribers
    r = gc.collect('thumbs_up')
    assert r.success, r.message
    saved = cv2.imread(r.path)
    assert saved.shape == cv2.imread(str(path)).shape


def test_bad_compressed_data_is_refused_with_a_reason_and_the_nodes_live(graph):
    gc, photo = graph['client'], sorted((THUMBS / 'thumbs_up').glob('*.jpg'))[2].read_bytes()
    bad = [(photo[:len(photo) // 2], 'jpeg', 'truncated JPEG'),
           (photo, 'tiff', 'unsupported compressed format'),
           (photo, 'png', 'not a PNG'),
           (b'', 'jpeg', 'not a JPEG')]
    for data, fmt, reason in bad:
        def refused(data=data, fmt=fmt, reason=reason):  # (sent again until the collector has it)
            graph['pub'].publish(_compressed(data, fmt, 'bad', gc))
            r = gc.collect('thumbs_up')
            assert not r.success, r.message
            return reason in r.message

        wait_until(refused, 10, f'a refusal saying {reason!r}')
    # The classifier logs what it refuses (throttled) and still classifies. It classifies the
    # newest frame only, so not every bad frame above reached it (the collector's refusals
    # say 'truncated JPEG' too): a bad frame is sent until its warning is in the log.
    def classifier_warned():
        graph['pub'].publish(_compressed(b'', 'jpeg', 'bad', gc))
        return 'skipping malformed image' in graph['log'].read_text()

    wait_until(classifier_warned, 15, 'the classifier\'s warning')
    _classify(graph, _compressed(photo, 'jpeg', 'good-after-bad', gc))
    assert not graph['nodes'].poll()


def test_the_camera_publishes_jpeg_for_compressed_subscribers(graph):
    gc = graph['client']
    after = gc.set_camera_source(str(THUMBS / 'thumbs_up'), loop=True)
    try:
        p = gc.wait_for_prediction(lambda p: p.header.frame_id == 'camera_optical_frame' and
                                   p.header.stamp.sec + p.header.stamp.nanosec * 1e-9 > after,
                                   30)
        assert p.label in CLASSES
    finally:
        gc.set_camera_source(str(graph['root'] / 'no_camera'))
