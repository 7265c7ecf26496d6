"""Section 4: seconds per epoch of the ``train`` action against a plain PyTorch loop.

Data: the real DLI-made set ``thumbs_jaygarg20`` (60 + 60 images, 224x224) copied into a
temporary ``<data_dir>/thumbs/dataset/<class>/``. Only the trainer node runs (no classifier).

Node: a real trainer process; one goal of 1 + N epochs sent with ``GestureClient.train``; the
time of every feedback message (one per batch, with epoch/batch/batches) is taken on arrival.
Epoch k's time = arrival of epoch k's last-batch feedback - arrival of epoch k-1's (so it holds
epoch k-1's validation pass and epoch k's training pass), for k = 2..N+1. Also: time from
sending the goal to the first feedback (loading the images, building the model, trying the
ImageNet weights, the first batch).

Reference: a plain PyTorch loop written here (:func:`plain_training`), same recipe and
``TrainConfig`` defaults (the node gets the same values as parameters): torchvision ResNet-18
with the ImageNet weights when torchvision can load them (as the trainer tries), ``fc``
replaced, Adam, cross-entropy, ColorJitter(0.2, 0.2, 0.2, 0.2), resize to 224 (bilinear,
antialias) and ImageNet normalisation, images decoded once, the same stratified split sizes,
validation after every epoch in batches of 32. Epoch k's time = training pass + validation
pass of epoch k, k = 2..N+1.

The first epoch is excluded on both sides: it carries one-time costs (oneDNN primitive
creation, the allocator growing to its working set), which the plain loop's own epoch 1 shows
(reported in the note of the row and in the JSON).

Target: node epoch time <= 1.15 x the plain loop's.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import torch
from torch import nn
from torchvision import models
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from gesture_classifier.ros.client import GestureClient, TrainStatus
from gesture_classifier.core.dataset import list_images
from gesture_classifier.core.preprocess import IMAGENET_MEAN, IMAGENET_STD
from gesture_classifier.core.training import DLI, TrainConfig

from .common import (CLASSES, TASK, BenchError, SectionResult, Settings, Workspace,
                     cpu_seconds, log, node_graph, summarize)
from .report import Row, Target

SECTION = 'trainer'
#: The DLI recipe (every layer, Adam, ColorJitter) with the trainer's defaults for batch size,
#: validation share, seed and augmentation: what the plain loop below implements, and what the
#: node is told to use (``recipe: dli``). The default recipe's epoch time against the DLI
#: recipe's is the learning benchmark's ``speed`` section (bench/learning.py).
RECIPE = TrainConfig(epochs=1, recipe=DLI)
INPUT_SIZE = 224
MAX_RATIO = 1.15


def _decode(dataset_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of every class, decoded once to uint8 (3, 224, 224) RGB, and its class."""
    images, targets = [], []
    for index, label in enumerate(CLASSES):
        for path in list_images(dataset_dir / label):
            rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            chw = torch.from_numpy(rgb).permute(2, 0, 1)
            images.append(TF.resize(chw, [INPUT_SIZE, INPUT_SIZE], antialias=True).contiguous())
            targets.append(index)
    return torch.stack(images), torch.tensor(targets)


def _split(targets: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Stratified split: floor(n * val_fraction) images of each class for validation."""
    train, val = [], []
    for cls in torch.unique(targets):
        idx = torch.nonzero(targets == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = int(len(idx) * RECIPE.val_fraction)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train), torch.cat(val)


def _resnet18(num_classes: int) -> tuple[nn.Module, bool]:
    """torchvision ResNet-18 with ImageNet weights when torchvision can load them (from its
    cache; there is no internet here), and a new ``fc``; returns (model, pretrained)."""
    model = models.resnet18(weights=None)
    try:
        state = models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False,
                                                                     weights_only=True)
        model.load_state_dict(state)
        pretrained = True
    except Exception:  # offline and not cached: the trainer falls back the same way
        pretrained = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model, pretrained


def plain_training(dataset_dir: Path, epochs: int, device: str) -> dict:
    """The reference training loop (module docstring) for ``epochs`` epochs.

    Returns:
        dict with ``epoch_s`` (list of wall seconds per epoch, training + validation),
        ``first_batch_s`` (from the start, decoding included, to the end of the first batch),
        ``pretrained``, ``train_images``, ``val_images``, ``val_accuracy`` (last epoch).
    """
    start = time.perf_counter()
    images, targets = _decode(dataset_dir)
    generator = torch.Generator().manual_seed(RECIPE.seed)
    train_idx, val_idx = _split(targets, generator)
    torch.manual_seed(RECIPE.seed)
    model, pretrained = _resnet18(len(CLASSES))
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=RECIPE.lr)
    criterion = nn.CrossEntropyLoss()
    jitter = T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def normalise(batch: torch.Tensor) -> torch.Tensor:
        return (batch.to(device).float() / 255.0 - mean) / std

    epoch_s, first_batch_s, accuracy = [], None, -1.0
    bs = RECIPE.batch_size
    for _ in range(epochs):
        t = time.perf_counter()
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for b in range(0, len(order), bs):
            idx = order[b:b + bs]
            batch = images[idx]
            if RECIPE.augment:
                batch = torch.stack([jitter(img) for img in batch])
            y = targets[idx].to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(normalise(batch)), y)
            loss.backward()
            optimizer.step()
            loss.item()  # a loop that reports its loss, as the trainer does
            if first_batch_s is None:
                first_batch_s = time.perf_counter() - start
        model.eval()
        correct = 0
        with torch.inference_mode():
            for b in range(0, len(val_idx), 32):
                idx = val_idx[b:b + 32]
                correct += int((model(normalise(images[idx])).argmax(1).cpu()
                                == targets[idx]).sum())
        accuracy = correct / max(len(val_idx), 1)
        epoch_s.append(time.perf_counter() - t)
    return {'epoch_s': epoch_s, 'first_batch_s': first_batch_s, 'pretrained': pretrained,
            'train_images': len(train_idx), 'val_images': len(val_idx),
            'val_accuracy': accuracy}


#: A goal's epochs above the largest max_epochs the trainer accepts (nodes/trainer.py).
REJECTED_EPOCHS = 20000


def node_training(ws: Workspace, epochs: int, cfg: Settings) -> dict:
    """One ``train`` goal of ``epochs`` epochs to a trainer node (module docstring).

    Returns:
        dict with ``epoch_s`` (per epoch from epoch 2, see the module docstring),
        ``first_feedback_s``, ``goal_s`` (sending to the result), ``feedback`` (count),
        ``node_cpu_cores`` (CPU seconds of the node / goal seconds), the goal's result.
    """
    params = {'device': cfg.device, 'batch_size': RECIPE.batch_size, 'recipe': 'dli',
              'learning_rate': RECIPE.lr, 'val_fraction': RECIPE.val_fraction,
              'seed': RECIPE.seed, 'augment': RECIPE.augment, 'initial_weights': 'imagenet'}
    feedback: list[tuple[float, int, int, int]] = []
    with GestureClient() as client, \
            node_graph(ws, ['trainer'], ws.dataset(), 'trainer', trainer=params) as graph:
        # Not timed: a goal the trainer rejects (more epochs than its max_epochs, at most
        # 10000; 0 means auto) tells that its action server is up, so the timed goal below
        # does not wait for discovery.
        if client.send_train_goal(REJECTED_EPOCHS, timeout=120.0) is not None:
            raise BenchError(f'the trainer accepted a goal of {REJECTED_EPOCHS} epochs')
        cpu0, t0 = cpu_seconds(graph.pid('trainer')), time.monotonic()
        outcome = client.train(epochs, on_feedback=lambda fb: feedback.append(
            (time.monotonic(), fb.epoch, fb.batch, fb.batches)), timeout=1800.0)
        t1, cpu1 = time.monotonic(), cpu_seconds(graph.pid('trainer'))
        graph.check()
    if outcome.status is not TrainStatus.SUCCEEDED:
        raise BenchError(f'train goal {outcome.status.name}: '
                         f'{outcome.result.message if outcome.result else "rejected"}')
    ends = {e: t for t, e, b, n in feedback if b == n}  # arrival of each epoch's last batch
    if len(ends) != epochs:
        raise BenchError(f'feedback of the last batch arrived for epochs {sorted(ends)} '
                         f'of 1..{epochs}')
    res = outcome.result
    return {'epoch_s': [ends[e] - ends[e - 1] for e in range(2, epochs + 1)],
            'first_feedback_s': feedback[0][0] - t0, 'goal_s': t1 - t0,
            'feedback': len(feedback), 'batches_per_epoch': feedback[0][3],
            'node_cpu_cores': (cpu1 - cpu0) / (t1 - t0),
            'model_path': res.model_path, 'pretrained': res.pretrained,
            'train_images': res.train_images, 'val_images': res.val_images,
            'val_accuracy': res.val_accuracy, 'message': res.message}


def run(ws: Workspace, cfg: Settings) -> SectionResult:
    """The node first (its model is then used by the classifier sections), then the plain
    loop, each 1 warm-up + ``cfg.trainer_epochs`` epochs."""
    epochs = 1 + cfg.trainer_epochs
    log(f'trainer: train goal of {epochs} epochs (1 warm-up) on {ws.dataset()}')
    node = node_training(ws, epochs, cfg)
    ws.model_path = Path(node['model_path'])
    log(f'trainer: node {summarize(node["epoch_s"])["mean"]:.2f} s/epoch; plain loop, '
        f'{epochs} epochs')
    plain = plain_training(ws.dataset() / TASK / 'dataset', epochs, cfg.device)
    measured = plain['epoch_s'][1:]
    node_mean = summarize(node['epoch_s'])['mean']
    plain_mean = summarize(measured)['mean']
    if (node['train_images'], node['val_images']) != (plain['train_images'],
                                                      plain['val_images']):
        raise BenchError(f'split sizes differ: node {node["train_images"]}/'
                         f'{node["val_images"]}, plain {plain["train_images"]}/'
                         f'{plain["val_images"]}')
    weights = 'ImageNet' if node['pretrained'] else 'random (ImageNet weights not available)'
    rows = [
        Row(SECTION, f'epoch time (mean of {cfg.trainer_epochs})', 's', node_mean, plain_mean,
            'plain PyTorch loop', 'ratio', Target('<=', 'ratio', MAX_RATIO),
            note=f'{node["train_images"]} training + {node["val_images"]} validation images, '
                 f'batch {RECIPE.batch_size}, {weights} initial weights; epoch 1 excluded '
                 f'on both sides (plain loop: epoch 1 {plain["epoch_s"][0]:.2f} s vs '
                 f'{plain_mean:.2f} s after)'),
        Row(SECTION, 'goal -> first feedback', 's', node['first_feedback_s'],
            plain['first_batch_s'], 'plain: decode + model + 1st batch', 'diff'),
    ]
    return SectionResult(rows, {'node': {**node, 'epoch_s': summarize(node['epoch_s'])},
                                'plain': {**plain, 'epoch_1_s': plain['epoch_s'][0],
                                          'epoch_s': summarize(measured)}})
