"""Learning benchmark: does a trained model recognise people it was never taught by, does it
know when it is wrong, and which frames would teach it most?

    scripts/bench.sh learning [--recipe generalise] [--seeds 0,1,2] [--epochs 0]
                              [--only eval,lopo,fingers,rps,none,active,speed]
                              [--threads N] [--name NAME]
                              [--set FIELD=VALUE ...] [--input-size 224]
                              [--white-balance gray_world|none]
    scripts/bench.sh learning --report bench/results/learning-A.json ...   # tables only

Everything goes through the product's own code in this process: ``train_task`` (what a
``train`` goal runs; ``--epochs 0`` is the goal's "auto"), the model file written and read
back, the calibrated probabilities and out-of-distribution score of
:class:`~gesture_classifier.core.inference.Predictor`'s maths, the gesture
:class:`~gesture_classifier.core.gestures.Debouncer` and the classifier's
:class:`~gesture_classifier.core.active.ReviewQueue`. Real photos come from ``../shared/data``
(never copied into the repository). Starting weights: the ImageNet-like **stand-in**
``../shared/models/resnet18_imagenet_standin.pth`` (NOT the genuine ImageNet weights; see its
README: figures are close to, not equal to, what the genuine weights give).

Sections (each run once per seed; the seed draws the validation split, the batch order, the
augmentation and the splits below):

- ``eval``: train on the three thumbs sets (``thumbs_jaygarg20``, ``thumbs_wincle626``,
  ``thumbs_leticiacechinel``: different people, cameras and rooms); test on
  ``thumbs_dharshinidayakar_eval`` (another person, webcam and dark room; never trained on)
  and on the webcam clips ``thumbs_up``/``thumbs_down`` of ``videos/upgrad_gesture_clips``
  (two more people, 160x120; the frames after the thumb shows). Frames with **no taught
  gesture** (the eval set's fist/palm/peace, the clips' stop/left_swipe/right_swipe, crops of
  the fingers photos that avoid every hand box ("empty rooms"), rock/paper/scissors, the
  fingers photos): how often the debouncer would emit a gesture event for each, shown as a
  still for ``min_frames`` frames, without and with the "unsure" gate (untrusted frames count
  as none).
- ``lopo``: leave one of the three thumbs people out (train on two, test on the third).
- ``fingers``: the DLI ``fingers`` classes 1-5 of ``fingers_subhih_test``: about 30 % of the
  recording sessions (file-name prefix before ``_pic``) are held out whole ("untaught
  sessions"); of the rest, 25 % of the photos are held back ("taught sessions, new
  photos"); training uses what remains.
- ``rps``: rock/paper/scissors, a random 30 % held out (one green-screen set: not a
  new-person test).
- ``none``: the thumbs task with a third class ``none`` collected from other sources (40
  rock/paper/scissors photos, 40 fingers photos, 40 empty-room crops): the thumbs new-person
  accuracy and the event rate on the no-gesture frames of *unseen* sources (the eval set's
  fist/palm/peace and the clips' stop/swipes).
- ``active``: active learning. For a new person (``jaygarg20`` and ``wincle626`` left out of
  training, and the eval set's thumbs with its burned-in label text masked), half of the
  person's photos are the pool and half the test. Round 0 trains on the others; each of two
  rounds then adds 10 pool frames and trains 5 more epochs from the current model: frames
  chosen by the classifier's review queue (most uncertain first) vs frames chosen at random.
- ``speed``: seconds per epoch of the recipe vs the previous default (:data:`PREVIOUS`), 3
  epochs each on the ``eval`` training images, interleaved twice; median of epochs 2-3.

Per labelled test set: accuracy, recall per class, accuracy with horizontal-flip averaging
(measured, not used by the product), expected calibration error (15 bins) and the share of
images answered wrong with confidence >= 0.8, each for the raw softmax (T = 1) and the
calibrated one.

Results: tables on stdout and every figure in ``bench/results/learning-<name>.json`` (and
``learning-latest.json``): machine, versions, settings, every run.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import datetime as dt
import hashlib
import json
import math
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

from gesture_classifier.core.active import ReviewConfig, ReviewQueue
from gesture_classifier.core.calibration import (confidently_wrong_rate, expected_calibration_error,
                                            softmax)
from gesture_classifier.core.dataset import ImageSet, load_images
from gesture_classifier.core.gestures import NONE, DebounceConfig, Debouncer
from gesture_classifier.core.model import ModelFile, load_model
from gesture_classifier.core.preprocess import (WHITE_BALANCES, PreprocessSpec, normalize, resize,
                                               to_chw_rgb)
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.trainer import RECIPE_SETTINGS
from gesture_classifier.core.training import (DEFAULT_RECIPE, DEFAULT_SPEC, RECIPES, Recipe,
                                              TrainConfig, logits_batches, train_task)

from .common import REPO, SHARED_DATA, log, machine_info

STANDIN = SHARED_DATA.parent / 'models' / 'resnet18_imagenet_standin.pth'
THUMBS = ('thumbs_up', 'thumbs_down')
PEOPLE = {'jaygarg20': 'thumbs_jaygarg20', 'wincle626': 'thumbs_wincle626',
          'leticiacechinel': 'thumbs_leticiacechinel'}
EVAL_SET = 'thumbs_dharshinidayakar_eval'
CLIPS = SHARED_DATA / 'videos' / 'upgrad_gesture_clips'
FINGERS = ('1', '2', '3', '4', '5')
RPS = ('rock', 'paper', 'scissors')
SECTIONS = ('eval', 'lopo', 'fingers', 'rps', 'none', 'active', 'speed')
RESULTS = REPO / 'bench' / 'results'
SPEC = DEFAULT_SPEC  # the trainer's, unless --input-size / --white-balance change it
#: The default recipe before this benchmark's study (2026-12-02), for the speed comparison.
PREVIOUS = Recipe(name='generalise-2026-12-02', train_from='layer3', freeze_batchnorm=True,
                  learning_rate=1e-3, backbone_lr_factor=0.1, weight_decay=1e-4,
                  label_smoothing=0.1, augmentation='camera', head_warmup_epochs=1,
                  cosine=True, average='swa')
#: Rows of the eval set's frames hidden in the active section (its label text, top-left).
MASK_ROWS = 60
#: Frames added per active-learning round, rounds, and epochs per round.
ACTIVE_FRAMES, ACTIVE_ROUNDS, ACTIVE_EPOCHS = 10, 2, 5


# ---------------------------------------------------------------- data

def load_set(folder: Path, classes: tuple[str, ...]) -> ImageSet:
    """Every image of ``folder/<class>/`` decoded and resized once, as the trainer does."""
    if not folder.is_dir():
        raise SystemExit(f'learning bench: {folder} not found (../shared/data is needed)')
    task = Task.create('bench', classes=list(classes), dataset_dir=folder,
                       data_dir=tempfile.gettempdir())
    return load_images(task, SPEC)


def subset(data: ImageSet, index) -> ImageSet:
    index = torch.as_tensor(index, dtype=torch.int64)
    return ImageSet(images=data.images[index], targets=data.targets[index],
                    class_names=data.class_names, paths=[data.paths[i] for i in index.tolist()])


def concat(sets: list[ImageSet], class_names=None) -> ImageSet:
    return ImageSet(images=torch.cat([s.images for s in sets]),
                    targets=torch.cat([s.targets for s in sets]),
                    class_names=class_names or sets[0].class_names,
                    paths=[p for s in sets for p in s.paths])


def uint8_frame(bgr: np.ndarray) -> torch.Tensor:
    return resize(to_chw_rgb(np.ascontiguousarray(bgr), 'bgr'), SPEC).contiguous()


def clip_frames(name: str, first: int = 0) -> torch.Tensor:
    """The frames of a clip from ``first`` on, as the trainer would store them."""
    cap = cv2.VideoCapture(str(CLIPS / f'{name}.mp4'))
    frames, index = [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if index >= first:
            frames.append(uint8_frame(bgr))
        index += 1
    if not frames:
        raise SystemExit(f'learning bench: no frames in {CLIPS / name}.mp4')
    return torch.stack(frames)


def empty_rooms() -> torch.Tensor:
    """Crops of the fingers photos that avoid every hand box of ``test_labels.csv``: the
    largest strip left, right, above or below all boxes, when it is at least 30 % of the
    short side wide and 20 % of the photo."""
    folder = SHARED_DATA / 'fingers_subhih_test'
    boxes = defaultdict(list)
    with open(folder / 'test_labels.csv') as f:
        for row in csv.DictReader(f):
            boxes[row['filename']].append(row)
    files = {p.name: p for p in folder.rglob('*.jpg')}
    crops = []
    for name, rows in sorted(boxes.items()):
        if name not in files:
            continue
        w, h = int(rows[0]['width']), int(rows[0]['height'])
        x0, x1 = min(int(r['xmin']) for r in rows), max(int(r['xmax']) for r in rows)
        y0, y1 = min(int(r['ymin']) for r in rows), max(int(r['ymax']) for r in rows)
        strips = [s for s in ((0, 0, x0, h), (x1, 0, w, h), (0, 0, w, y0), (0, y1, w, h))
                  if min(s[2] - s[0], s[3] - s[1]) >= 0.3 * min(w, h)]
        if not strips:
            continue
        s = max(strips, key=lambda s: (s[2] - s[0]) * (s[3] - s[1]))
        if (s[2] - s[0]) * (s[3] - s[1]) < 0.2 * w * h:
            continue
        bgr = cv2.imread(str(files[name]))
        fy, fx = bgr.shape[0] / h, bgr.shape[1] / w
        crops.append(uint8_frame(bgr[int(s[1] * fy):int(s[3] * fy),
                                     int(s[0] * fx):int(s[2] * fx)]))
    return torch.stack(crops)


def sessions(data: ImageSet) -> list[str]:
    """Recording session of each image: the file-name prefix before ``_pic``."""
    return [re.split(r'_pic', p.name)[0] for p in data.paths]


def session_split(data: ImageSet, held_out_share: float, back_share: float,
                  seed: int) -> tuple[list[int], list[int], list[int]]:
    """(train, untaught sessions, held-back photos of taught sessions) indices: whole sessions
    in a random order are held out while they fit in ``held_out_share`` of the images (at
    least one); then ``back_share`` of the remaining photos, at random."""
    by_session = defaultdict(list)
    for i, s in enumerate(sessions(data)):
        by_session[s].append(i)
    names = sorted(by_session)
    g = torch.Generator().manual_seed(seed)
    untaught, target = [], held_out_share * len(data.paths)
    for k in torch.randperm(len(names), generator=g).tolist():
        if not untaught or len(untaught) + len(by_session[names[k]]) <= target:
            untaught.extend(by_session[names[k]])
    rest = sorted(set(range(len(data.paths))) - set(untaught))
    order = torch.randperm(len(rest), generator=g).tolist()
    n_back = int(back_share * len(rest))
    back = sorted(rest[i] for i in order[:n_back])
    train = sorted(rest[i] for i in order[n_back:])
    return train, sorted(untaught), back


def random_split(n: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = int(share * n)
    return sorted(order[k:]), sorted(order[:k])


class Data:
    """Every image set of the benchmark, decoded once."""

    def __init__(self, sections):
        log('loading images (decoded and resized once)')
        self.people = {n: load_set(SHARED_DATA / f, THUMBS) for n, f in PEOPLE.items()}
        self.eval = load_set(SHARED_DATA / EVAL_SET, THUMBS)
        up, down = clip_frames('thumbs_up', first=2), clip_frames('thumbs_down', first=6)
        self.clips = ImageSet(torch.cat([up, down]),
                              torch.tensor([0] * len(up) + [1] * len(down)), THUMBS,
                              [Path(f'thumbs_up.mp4#{i}') for i in range(len(up))] +
                              [Path(f'thumbs_down.mp4#{i}') for i in range(len(down))])
        ev = SHARED_DATA / EVAL_SET
        others = load_set(ev, ('fist', 'palm', 'peace'))
        self.negatives = {f'{EVAL_SET} {c}': others.images[others.targets == i]
                          for i, c in enumerate(others.class_names)}
        for c in ('stop', 'left_swipe', 'right_swipe'):
            self.negatives[f'webcam clip {c}'] = clip_frames(c)
        self.rooms = empty_rooms()
        self.negatives['empty rooms (fingers photos without the hand)'] = self.rooms
        self.rps = load_set(SHARED_DATA / 'rps_drgfreeman_subset', RPS)
        self.negatives['rock/paper/scissors'] = self.rps.images
        self.fingers_all = load_set(SHARED_DATA / 'fingers_subhih_test',
                                    ('0',) + FINGERS)
        self.negatives['fingers 0-5'] = self.fingers_all.images
        self.fingers = subset(self.fingers_all,
                              torch.nonzero(self.fingers_all.targets > 0).flatten())
        self.fingers.targets = self.fingers.targets - 1
        self.fingers.class_names = FINGERS

    def thumbs_train(self) -> ImageSet:
        return concat(list(self.people.values()))


# ---------------------------------------------------------------- one training, its scores

#: Models trained from the initial weights in this process, by what determines them (the
#: images and labels, recipe, seed, epochs): eval, lopo and active train the same base
#: models (the three thumbs people; each pair of them), so a run of those sections trains
#: each once and its sections test the very same model.
_TRAINED: dict[tuple, tuple[ModelFile, dict]] = {}


def _training_key(data: ImageSet, recipe: Recipe, seed: int, epochs: int) -> tuple:
    digest = hashlib.sha1(data.images.contiguous().numpy().tobytes())
    digest.update(data.targets.numpy().tobytes())
    digest.update('\n'.join(map(str, data.paths)).encode())
    return digest.hexdigest(), tuple(data.class_names), recipe, seed, epochs, SPEC


def train(data: ImageSet, recipe: Recipe, seed: int, epochs: int, workdir: Path,
          parent: ModelFile | None = None, timing: bool = False) -> tuple[ModelFile, dict]:
    """One ``train`` goal's worth of training; the model file read back as the classifier
    would; run facts (epochs, images, seconds, per-epoch wall/CPU seconds). A model from the
    initial weights that this process trained before is reused (facts say ``reused``)."""
    key = _training_key(data, recipe, seed, epochs) if parent is None and not timing else None
    if key in _TRAINED:
        mf, facts = _TRAINED[key]
        return mf, dict(facts, reused=True)
    task = Task.create('bench', classes=list(data.class_names), data_dir=workdir)
    cfg = TrainConfig(epochs=epochs, seed=seed, recipe=recipe)
    ends, cpu = [], []
    start, start_cpu = time.perf_counter(), time.process_time()

    def on_progress(p):
        if p.batch == p.batches:
            ends.append(time.perf_counter())
            cpu.append(time.process_time())

    out = train_task(task, cfg, str(STANDIN), spec=SPEC, data=data, parent=parent,
                     on_progress=on_progress)
    seconds = time.perf_counter() - start
    mf = load_model(out.model.path, expected_classes=data.class_names)
    facts = {'epochs': out.fit.epochs_completed, 'train_images': out.train_images,
             'val_images': out.val_images, 'val_accuracy': out.fit.val_accuracy,
             'seconds': seconds, 'seconds_per_epoch': seconds / out.fit.epochs_completed,
             'temperature': mf.temperature, 'calibration': mf.calibration,
             'ood_reference': mf.ood.to_dict()}
    if timing:
        facts['epoch_seconds'] = [b - a for a, b in zip([start] + ends, ends)]
        facts['epoch_cpu_seconds'] = [b - a for a, b in zip([start_cpu] + cpu, cpu)]
    if key is not None:
        _TRAINED[key] = mf, facts
    return mf, facts


def judge(mf: ModelFile, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, calibrated probabilities, ood scores) as the classifier computes them."""
    logits = logits_batches(mf.model, images, mf.spec).numpy()
    return logits, softmax(logits, mf.temperature), mf.ood.score(logits, mf.temperature)


def bn_adapted(model: torch.nn.Module, images: torch.Tensor,
               spec: PreprocessSpec) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are those of ``images`` (AdaBN, Li et
    al., 2016: every BatchNorm layer's running mean and variance re-estimated on the target
    domain, nothing else changed): what adapting to a new room at run time could give,
    optimistic here because the statistics come from the very images scored."""
    adapted = copy.deepcopy(model)
    for m in adapted.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches
    adapted.train()
    with torch.no_grad():
        for start in range(0, len(images), 32):
            adapted(normalize(images[start:start + 32], spec))
    return adapted.eval()


def _image_name(path: Path) -> str:
    """A test image's name in a results file: relative to ``../shared/data`` where it is
    there (no machine's folders in committed results), else as given (clip frames)."""
    try:
        return str(Path(path).resolve().relative_to(SHARED_DATA.resolve()))
    except ValueError:
        return str(path)


def score(mf: ModelFile, data: ImageSet) -> dict:
    """Accuracy, recall per class, flip-averaged accuracy, calibration (raw and calibrated),
    accuracy after AdaBN on the scored images (see :func:`bn_adapted`), and every image
    answered wrong (``wrong``: name, label, answer, calibrated confidence, OOD score), so
    that runs can be compared image by image."""
    logits, probs, ood = judge(mf, data.images)
    adabn = logits_batches(bn_adapted(mf.model, data.images, mf.spec), data.images,
                           mf.spec).numpy()
    flipped = logits_batches(mf.model, torch.flip(data.images, dims=[-1]), mf.spec).numpy()
    y = data.targets.numpy()
    pred = probs.argmax(1)
    raw = softmax(logits)
    tta = (probs + softmax(flipped, mf.temperature)) / 2
    return {'images': len(y), 'accuracy': float((pred == y).mean()),
            'recall': {c: float((pred[y == i] == i).mean())
                       for i, c in enumerate(data.class_names) if (y == i).any()},
            'accuracy_flip_tta': float((tta.argmax(1) == y).mean()),
            'accuracy_adabn': float((adabn.argmax(1) == y).mean()),
            'ece_raw': expected_calibration_error(raw, y),
            'ece': expected_calibration_error(probs, y),
            'confidently_wrong_raw': confidently_wrong_rate(raw, y),
            'confidently_wrong': confidently_wrong_rate(probs, y),
            'untrusted': float((ood > 1.0).mean()),
            'wrong': [{'image': _image_name(data.paths[i]),
                       'label': data.class_names[y[i]], 'answer': data.class_names[pred[i]],
                       'confidence': round(float(probs[i].max()), 3),
                       'ood': round(float(ood[i]), 3)}
                      for i in np.flatnonzero(pred != y).tolist()]}


#: ``ood_threshold`` values whose gated event rates the bench reports besides the default
#: (1.0): the trade-off a user makes with ``ros2 param set /classifier ood_threshold``.
OOD_SWEEP = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def event_rates(mf: ModelFile, images: torch.Tensor, targets: np.ndarray | None = None,
                config: DebounceConfig | None = None, ood_threshold: float = 1.0) -> dict:
    """Each image shown as a still for ``config.min_frames`` frames at 30 FPS to a fresh
    :class:`Debouncer`: the share that ends in a gesture event (a stable label other than
    none), without and with the unsure gate (``ood_threshold``, and each of
    :data:`OOD_SWEEP` under ``*_by_threshold``); with ``targets``, the share whose event is
    the right gesture."""
    config = config or DebounceConfig()
    _, probs, ood = judge(mf, images)
    n = max(len(probs), 1)

    def rates(threshold: float) -> tuple[float, float]:
        fired, right = 0, 0
        for i, p in enumerate(probs):
            deb, label = Debouncer(config), NONE
            trusted = bool(ood[i] <= threshold)
            for k in range(config.min_frames):
                event = deb.update(p, mf.class_names, k / 30.0, trusted=trusted)
                if event is not None:
                    label = event.label
            fired += label != NONE
            right += targets is not None and label == mf.class_names[int(targets[i])]
        return fired / n, right / n

    out = {'images': len(probs)}
    for key, threshold in (('plain', math.inf), ('gated', ood_threshold)):
        out[f'events_{key}'], right = rates(threshold)
        if targets is not None:
            out[f'right_events_{key}'] = right
    sweep = {f'{t:g}': rates(t) for t in OOD_SWEEP}
    out['events_by_threshold'] = {t: r[0] for t, r in sweep.items()}
    if targets is not None:
        out['right_events_by_threshold'] = {t: r[1] for t, r in sweep.items()}
    return out


# ---------------------------------------------------------------- sections

def run_eval(d: Data, recipe, seed, epochs, tmp) -> dict:
    mf, facts = train(d.thumbs_train(), recipe, seed, epochs, tmp)
    tests = {f'{EVAL_SET} (new person)': d.eval, 'webcam clips (2 new people)': d.clips}
    run = dict(facts, tests={n: score(mf, s) for n, s in tests.items()}, events={})
    for n, s in tests.items():
        run['events'][n] = event_rates(mf, s.images, s.targets.numpy())
    for n, images in d.negatives.items():
        run['events'][n] = event_rates(mf, images)
    return run


def run_lopo(d: Data, recipe, seed, epochs, tmp) -> list[dict]:
    runs = []
    for out in d.people:
        data = concat([s for n, s in d.people.items() if n != out])
        mf, facts = train(data, recipe, seed, epochs, tmp)
        runs.append(dict(facts, fold=out,
                         tests={f'{out} (left out)': score(mf, d.people[out])}))
    return runs


def run_fingers(d: Data, recipe, seed, epochs, tmp) -> dict:
    tr, untaught, back = session_split(d.fingers, 0.3, 0.25, seed)
    mf, facts = train(subset(d.fingers, tr), recipe, seed, epochs, tmp)
    return dict(facts, tests={
        f'fingers_subhih_test, untaught sessions ({len(untaught)} images)':
            score(mf, subset(d.fingers, untaught)),
        f'fingers_subhih_test, taught sessions, new photos ({len(back)} images)':
            score(mf, subset(d.fingers, back))})


def run_rps(d: Data, recipe, seed, epochs, tmp) -> dict:
    tr, te = random_split(len(d.rps.paths), 0.3, seed)
    mf, facts = train(subset(d.rps, tr), recipe, seed, epochs, tmp)
    return dict(facts, tests={f'rps_drgfreeman_subset ({len(te)} images, random split)':
                              score(mf, subset(d.rps, te))})


def run_none(d: Data, recipe, seed, epochs, tmp) -> dict:
    g = torch.Generator().manual_seed(1000 + seed)

    def pick(images, n):
        return images[torch.randperm(len(images), generator=g)[:n]]

    none = torch.cat([pick(d.rps.images, 40), pick(d.fingers_all.images, 40),
                      pick(d.rooms, 40)])
    base = d.thumbs_train()
    classes = THUMBS + ('none',)
    data = ImageSet(torch.cat([base.images, none]),
                    torch.cat([base.targets, torch.full((len(none),), 2)]), classes,
                    base.paths + [Path(f'none/{i}.jpg') for i in range(len(none))])
    mf, facts = train(data, recipe, seed, epochs, tmp)
    tests = {f'{EVAL_SET} (new person)': ImageSet(d.eval.images, d.eval.targets, classes,
                                                 d.eval.paths),
             'webcam clips (2 new people)': ImageSet(d.clips.images, d.clips.targets, classes,
                                                     d.clips.paths)}
    run = dict(facts, tests={n: score(mf, s) for n, s in tests.items()}, events={})
    for n, s in tests.items():
        run['events'][n] = event_rates(mf, s.images, s.targets.numpy())
    for n, images in d.negatives.items():
        if n.startswith((EVAL_SET, 'webcam clip')):  # sources the none class never saw
            run['events'][n] = event_rates(mf, images)
    return run


def choose_uncertain(mf: ModelFile, pool: ImageSet, n: int, seed: int) -> list[int]:
    """The pool frames the classifier's review queue keeps, fed in a random order as a
    stream (one frame per second of frame time; capacity ``n``)."""
    queue = ReviewQueue(ReviewConfig(capacity=n, min_interval=0.0, min_uncertainty=0.0))
    _, probs, ood = judge(mf, pool.images)
    order = torch.randperm(len(probs), generator=torch.Generator().manual_seed(seed))
    chosen = {}
    for k, i in enumerate(order.tolist()):
        hwc = pool.images[i].permute(1, 2, 0).numpy()
        frame = queue.offer(hwc, 'rgb', float(k), 'bench', probs[i], mf.class_names,
                            float(ood[i]), bool(ood[i] <= 1.0))
        if frame is not None:
            chosen[frame.id] = i
    return [chosen[f.id] for f in queue.items()]


def run_active(d: Data, recipe, seed, epochs, tmp) -> list[dict]:
    masked = d.eval.images.clone()
    masked[:, :, :MASK_ROWS * SPEC.input_size // 480, :] = 0  # the burned-in label text
    folds = {name: (concat([s for n, s in d.people.items() if n != name]), d.people[name])
             for name in ('jaygarg20', 'wincle626')}
    folds['dharshinidayakar (label text masked)'] = (
        d.thumbs_train(), ImageSet(masked, d.eval.targets, THUMBS, d.eval.paths))
    runs = []
    for name, (base, person) in folds.items():
        pool_idx, test_idx = random_split(len(person.paths), 0.5, seed)
        pool, test = subset(person, pool_idx), subset(person, test_idx)
        mf0, facts = train(base, recipe, seed, epochs, tmp)
        curves, chosen = {}, {}
        for strategy in ('uncertainty', 'random'):
            mf, used, curve = mf0, set(), [score(mf0, test)['accuracy']]
            chosen[strategy] = []  # per round: how many of the chosen frames are of each class
            for rnd in range(ACTIVE_ROUNDS):
                left = [i for i in range(len(pool.paths)) if i not in used]
                rest = subset(pool, left)
                if strategy == 'uncertainty':
                    picked = [left[i] for i in choose_uncertain(mf, rest, ACTIVE_FRAMES,
                                                                seed + rnd)]
                else:
                    g = torch.Generator().manual_seed(seed * 100 + rnd)
                    picked = [left[i] for i in
                              torch.randperm(len(left), generator=g)[:ACTIVE_FRAMES].tolist()]
                used.update(picked)
                labels = [pool.class_names[int(pool.targets[i])] for i in picked]
                chosen[strategy].append({c: labels.count(c) for c in pool.class_names})
                data = concat([base, subset(pool, sorted(used))])
                mf, _ = train(data, recipe, seed, ACTIVE_EPOCHS, tmp, parent=mf)
                curve.append(score(mf, test)['accuracy'])
            curves[strategy] = curve
        runs.append(dict(facts, fold=name, pool=len(pool.paths), test=len(test.paths),
                         curves=curves, chosen=chosen))
        log(f'active {name} seed {seed}: ' + ', '.join(
            f'{s} ' + ' -> '.join(f'{a:.3f}' for a in c) for s, c in curves.items())
            + '; classes chosen per round: ' + ', '.join(
                f'{s} {rounds}' for s, rounds in chosen.items()))
    return runs


def run_speed(d: Data, recipe, seed, epochs, tmp) -> list[dict]:
    runs = []
    for rep in range(2):
        for r in (PREVIOUS, recipe):
            _, facts = train(d.thumbs_train(), r, rep, 3, tmp, timing=True)
            runs.append(dict(facts, recipe=r.name, repeat=rep))
            log(f"speed {r.name} #{rep}: epochs "
                + ', '.join(f'{e:.1f}' for e in facts['epoch_seconds']) + ' s')
    return runs


RUNNERS = {'eval': run_eval, 'lopo': run_lopo, 'fingers': run_fingers, 'rps': run_rps,
           'none': run_none, 'active': run_active, 'speed': run_speed}


# ---------------------------------------------------------------- tables

def _per_seed(values, fmt='{:.2f}'):
    return ' / '.join(fmt.format(v) for v in values)


def accuracy_rows(runs: list[dict]) -> list[dict]:
    """Per (section, test set): accuracy per seed, worst, worst class recall, calibration."""
    groups = defaultdict(list)
    for run in runs:
        for test, sc in run.get('tests', {}).items():
            groups[(run['section'], test)].append((run, sc))
    rows = []
    for (section, test), items in groups.items():
        scs = [sc for _, sc in items]
        rows.append({'section': section, 'test': test, 'seeds': [r['seed'] for r, _ in items],
                     'accuracy': [s['accuracy'] for s in scs],
                     'worst': min(s['accuracy'] for s in scs),
                     'worst_recall': min(min(s['recall'].values()) for s in scs),
                     'flip_tta': [s['accuracy_flip_tta'] for s in scs],
                     'adabn': [s.get('accuracy_adabn', math.nan) for s in scs],
                     'ece_raw': max(s['ece_raw'] for s in scs),
                     'ece': max(s['ece'] for s in scs),
                     'wrong_raw': max(s['confidently_wrong_raw'] for s in scs),
                     'wrong': max(s['confidently_wrong'] for s in scs),
                     'epochs': [r['epochs'] for r, _ in items],
                     's_per_epoch': statistics.fmean(r['seconds_per_epoch'] for r, _ in items)})
    return sorted(rows, key=lambda r: (SECTIONS.index(r['section']), r['test']))


def format_tables(runs: list[dict]) -> str:
    out = []
    rows = accuracy_rows(runs)
    if rows:
        out += ['| section | test set | accuracy per seed | worst | worst class recall | '
                'flip-averaged | AdaBN on the test images | ECE raw -> calibrated (worst seed) '
                '| confidently wrong raw -> calibrated | epochs | s/epoch |', '|' + '---|' * 11]
        out += [f"| {r['section']} | {r['test']} | {_per_seed(r['accuracy'])} | "
                f"{r['worst']:.3f} | {r['worst_recall']:.2f} | {_per_seed(r['flip_tta'])} | "
                f"{_per_seed(r['adabn'])} | "
                f"{r['ece_raw']:.3f} -> {r['ece']:.3f} | {r['wrong_raw']:.1%} -> "
                f"{r['wrong']:.1%} | {_per_seed(r['epochs'], '{}')} | {r['s_per_epoch']:.1f} |"
                for r in rows]
    events = defaultdict(list)
    for run in runs:
        for name, ev in run.get('events', {}).items():
            events[(run['section'], name)].append(ev)
    if events:
        out += ['', '| section | frames | images | gesture events without -> with the unsure '
                'gate (per seed) | right events without -> with |', '|---|---|---|---|---|']
        for (section, name), evs in sorted(events.items()):
            right = (_per_seed([e['right_events_plain'] for e in evs], '{:.1%}') + ' -> ' +
                     _per_seed([e['right_events_gated'] for e in evs], '{:.1%}')
                     if 'right_events_plain' in evs[0] else '')
            out.append(f"| {section} | {name} | {evs[0]['images']} | "
                       + _per_seed([e['events_plain'] for e in evs], '{:.1%}') + ' -> '
                       + _per_seed([e['events_gated'] for e in evs], '{:.1%}')
                       + f' | {right} |')
    swept = {k: evs for k, evs in sorted(events.items()) if 'events_by_threshold' in evs[0]}
    if swept:
        out += ['', '| section | frames | gesture events (right events for a labelled set) '
                'with ood_threshold ' + ' / '.join(f'{t:g}' for t in OOD_SWEEP)
                + ', worst seed |', '|---|---|---|']
        for (section, name), evs in swept.items():
            labelled = 'right_events_by_threshold' in evs[0]
            key = 'right_events_by_threshold' if labelled else 'events_by_threshold'
            worst = min if labelled else max
            out.append(f'| {section} | {name} | ' + ' / '.join(
                f"{worst(e[key][f'{t:g}'] for e in evs):.1%}" for t in OOD_SWEEP) + ' |')
    active = [r for r in runs if r['section'] == 'active']
    if active:
        out += ['', '| new person (active) | pool / test | seeds | accuracy, uncertainty-'
                'chosen: 0 -> +10 -> +20 frames (mean over seeds) | random-chosen | '
                'uncertainty better in |', '|---|---|---|---|---|---|']
        by_fold = defaultdict(list)
        for r in active:
            by_fold[r['fold']].append(r)
        for fold, rs in by_fold.items():
            mean = {s: np.mean([r['curves'][s] for r in rs], axis=0) for s in rs[0]['curves']}
            wins = sum(r['curves']['uncertainty'][-1] > r['curves']['random'][-1] for r in rs)
            ties = sum(r['curves']['uncertainty'][-1] == r['curves']['random'][-1] for r in rs)
            out.append(f"| {fold} | {rs[0]['pool']} / {rs[0]['test']} | {len(rs)} | "
                       + ' -> '.join(f'{a:.3f}' for a in mean['uncertainty']) + ' | '
                       + ' -> '.join(f'{a:.3f}' for a in mean['random'])
                       + f' | {wins} of {len(rs)} seeds ({ties} tied) |')
    speed = [r for r in runs if r['section'] == 'speed']
    if speed:
        per = defaultdict(lambda: ([], []))
        for r in speed:
            per[r['recipe']][0].extend(r['epoch_seconds'][1:])
            per[r['recipe']][1].extend(r['epoch_cpu_seconds'][1:])
        ref = per.get(PREVIOUS.name)
        out += ['', '| recipe | s per epoch (wall, median) | CPU s per epoch | vs previous '
                'default (wall / CPU) |', '|---|---|---|---|']
        for name, (wall, cpu) in per.items():
            w, c = statistics.median(wall), statistics.median(cpu)
            ratio = (f'{w / statistics.median(ref[0]):.2f}x / {c / statistics.median(ref[1]):.2f}x'
                     if ref else 'n/a')
            out.append(f'| {name} | {w:.1f} | {c:.1f} | {ratio} |')
    return '\n'.join(out)


# ---------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='bench learning', description=__doc__.splitlines()[0])
    parser.add_argument('--recipe', default=DEFAULT_RECIPE,
                        help=f'recipe preset (default {DEFAULT_RECIPE}; {", ".join(RECIPES)})')
    parser.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                        help='change a field of the recipe (as the trainer\'s recipe.<field> '
                             'parameters, and crop_scale=LOW,HIGH), e.g. --set '
                             'train_from=layer2; repeatable')
    parser.add_argument('--input-size', type=int, default=DEFAULT_SPEC.input_size,
                        help='side of the network input in pixels (default %(default)s)')
    parser.add_argument('--white-balance', choices=WHITE_BALANCES,
                        default=DEFAULT_SPEC.white_balance,
                        help="the models' white balance (default %(default)s, the trainer's)")
    parser.add_argument('--seeds', default='0,1,2', help='comma-separated seeds (0,1,2)')
    parser.add_argument('--epochs', type=int, default=0,
                        help='epochs per training; 0 = auto, as a goal with epochs 0 (default)')
    parser.add_argument('--only', default=','.join(SECTIONS),
                        help=f'sections (default all: {",".join(SECTIONS)})')
    parser.add_argument('--threads', type=int, default=0,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument('--name', default='',
                        help='results file bench/results/learning-<name>.json (default: the UTC '
                             'start time); learning-latest.json is written too')
    parser.add_argument('--report', nargs='+', metavar='JSON',
                        help='print the tables of these result files and exit')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        runs = [r for p in args.report for r in json.loads(Path(p).read_text())['runs']]
        print(format_tables(runs))
        return 0
    if args.recipe not in RECIPES:
        raise SystemExit(f'unknown recipe {args.recipe!r}; presets: {", ".join(RECIPES)}')
    recipe = RECIPES[args.recipe]
    try:
        recipe = recipe.replace(**dict(_override(recipe, f) for f in args.set))
    except (TypeError, ValueError) as exc:
        raise SystemExit(f'--set: {exc}') from None
    global SPEC
    SPEC = PreprocessSpec(input_size=args.input_size, white_balance=args.white_balance)
    seeds = [int(s) for s in args.seeds.split(',')]
    sections = args.only.split(',')
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise SystemExit(f'unknown section(s) {unknown}; sections: {", ".join(SECTIONS)}')
    if args.threads:
        torch.set_num_threads(args.threads)
    if not STANDIN.is_file():
        raise SystemExit(f'learning bench: {STANDIN} not found')
    started = dt.datetime.now(dt.timezone.utc)
    data = Data(sections)
    runs = []
    with tempfile.TemporaryDirectory(prefix='gc-learning-') as tmp:
        for section in sections:
            for seed in (seeds if section != 'speed' else seeds[:1]):
                log(f'{section} seed {seed}')
                out = RUNNERS[section](data, recipe, seed, args.epochs, Path(tmp))
                for run in (out if isinstance(out, list) else [out]):
                    runs.append(dict(run, section=section, seed=seed))
                write_results(runs, started, args, recipe, seeds, sections, complete=False)
    table = write_results(runs, started, args, recipe, seeds, sections, complete=True)
    print(table)
    return 0


#: Recipe fields the bench's --set changes besides the trainer's recipe.<field> parameters
#: (they exist in code only: core.training.Recipe).
BENCH_ONLY_SETTINGS = ('crop_scale',)


def _override(recipe: Recipe, text: str) -> tuple[str, object]:
    """'FIELD=VALUE' as (field, value of the field's type in ``recipe``); raises ValueError."""
    field, sep, value = text.partition('=')
    if not sep or field not in (*RECIPE_SETTINGS, *BENCH_ONLY_SETTINGS):
        raise ValueError(f'{text!r} is not FIELD=VALUE with FIELD one of '
                         f'{", ".join((*RECIPE_SETTINGS, *BENCH_ONLY_SETTINGS))}')
    current = getattr(recipe, field)
    if isinstance(current, tuple):  # crop_scale=LOW,HIGH
        try:
            return field, tuple(float(v) for v in value.split(','))
        except ValueError:
            raise ValueError(f'{field} takes numbers like 0.8,1.0, got {value!r}') from None
    if isinstance(current, bool):
        if value not in ('true', 'false'):
            raise ValueError(f'{field} is true or false, got {value!r}')
        return field, value == 'true'
    return field, type(current)(value)


def write_results(runs, started, args, recipe, seeds, sections, complete: bool) -> str:
    """Write the JSON after every run (an interrupted benchmark keeps what it measured;
    ``complete`` says whether every planned run is in) and return the tables."""
    table = format_tables(runs)
    finished = dt.datetime.now(dt.timezone.utc)
    out = {'started': started.isoformat(timespec='seconds'),
           'finished': finished.isoformat(timespec='seconds'), 'complete': complete,
           'settings': {'recipe': dataclasses.asdict(recipe), 'seeds': seeds,
                        'epochs': args.epochs, 'sections': sections,
                        'input_size': SPEC.input_size,
                        'white_balance': SPEC.white_balance,
                        'weights': str(STANDIN.name), 'threads': torch.get_num_threads(),
                        'batch_size': TrainConfig(epochs=1).batch_size,
                        'val_fraction': TrainConfig(epochs=1).val_fraction},
           'machine': machine_info(), 'runs': runs, 'table': table}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"learning-{args.name or started.strftime('%Y%m%dT%H%M%SZ')}.json"
    text = json.dumps(out, indent=1, default=str)
    (RESULTS / name).write_text(text)
    (RESULTS / 'learning-latest.json').write_text(text)
    if complete:
        log(f'results: bench/results/{name} ({(finished - started).total_seconds():.0f} s)')
    return table


if __name__ == '__main__':
    sys.exit(main())
