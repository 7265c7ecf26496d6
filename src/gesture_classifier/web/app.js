// gesture_classifier web page: renders the state the web node pushes over /ws and sends the
// user's actions to /api/*. Every text from the server is set with textContent (never parsed
// as HTML), so a label or message cannot inject markup.
'use strict';

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const pct = (x) => `${(100 * x).toFixed(0)}%`;

// Predictions shown, for the latency benchmark: {stamp: capture time (s), shown: epoch ms}.
window.gcShown = [];

let state = null;
let classesKey = '';
let sourcesKey = '';
let lastStamp = null;

function toast(text, isError) {
  const t = $('toast');
  t.textContent = text;
  t.className = isError ? 'error' : '';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, isError ? 6000 : 2500);
}

async function post(path, body) {
  let res;
  try {
    res = await fetch(path, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body), credentials: 'same-origin',
    });
  } catch (err) {
    toast(`no connection to the robot: ${err.message}`, true);
    return null;
  }
  let data = {};
  try { data = await res.json(); } catch (err) { data = { error: `HTTP ${res.status}` }; }
  if (!res.ok) {
    toast(data.error || `HTTP ${res.status}`, true);
    return null;
  }
  return data;
}

// -- video ----------------------------------------------------------------------------------
function startVideo() {
  const img = $('video');
  img.onerror = () => setTimeout(() => { img.src = `/stream?t=${Date.now()}`; }, 2000);
  img.src = '/stream';
}

// -- hold to record: pointer events, so mouse, pen and touch behave the same ----------------
function bindHold(button, label) {
  let active = false;
  const stop = async () => {
    if (!active) return;
    active = false;
    button.classList.remove('recording');
    const r = await post('/api/record/stop', {});
    if (r) toast(`${label}: ${r.saved} frames recorded (${r.message})`);
  };
  button.addEventListener('pointerdown', async (ev) => {
    ev.preventDefault();
    if (active) return;
    button.setPointerCapture(ev.pointerId);
    active = true;
    button.classList.add('recording');
    const r = await post('/api/record/start', { label });
    if (!r) { active = false; button.classList.remove('recording'); }
  });
  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
    button.addEventListener(type, stop);
  }
  button.addEventListener('contextmenu', (ev) => ev.preventDefault());
}

// -- rendering ------------------------------------------------------------------------------
function buildClasses(classes) {
  const box = $('classes');
  box.replaceChildren();
  for (const name of classes) {
    const row = el('div', 'class');
    row.dataset.label = name;
    row.append(el('span', 'name', name), el('span', 'count', 'count -'));
    const add = el('button', 'add', 'Add');
    add.type = 'button';
    add.setAttribute('aria-label', `add the current frame to ${name}`);
    add.addEventListener('click', async () => {
      add.disabled = true;
      const r = await post('/api/collect', { label: name });
      add.disabled = false;
      if (r) toast(`added to ${name}: ${r.count} samples`);
    });
    const hold = el('button', 'hold secondary', 'Hold');
    hold.type = 'button';
    hold.setAttribute('aria-label', `record ${name} while pressed`);
    bindHold(hold, name);
    const undo = el('button', 'undo secondary', 'Undo');
    undo.type = 'button';
    undo.setAttribute('aria-label', `remove the newest ${name} sample`);
    undo.addEventListener('click', async () => {
      const r = await post('/api/undo', { label: name });
      if (r) toast(`${name}: newest sample moved to the trash`);
    });
    row.append(add, hold, undo, el('div', 'thumbs'));
    box.append(row);
  }
  const bars = $('bars');
  bars.replaceChildren();
  for (const name of classes) {
    const bar = el('div', 'bar');
    bar.dataset.label = name;
    const track = el('div', 'track');
    track.append(el('div', 'fill'));
    bar.append(el('span', 'name', name), track, el('span', 'value', '-'));
    bars.append(bar);
  }
}

function renderPrediction(s) {
  const p = s.prediction;
  const fresh = p && !s.camera.stale;
  $('top-label').textContent = fresh ? p.label : '-';
  $('top-conf').textContent = fresh ? pct(p.confidence) : '';
  $('overlay').textContent = fresh ? `${p.label} ${pct(p.confidence)}` : '';
  const probs = {};
  if (fresh) p.class_names.forEach((n, i) => { probs[n] = p.probabilities[i]; });
  for (const bar of $('bars').children) {
    const v = probs[bar.dataset.label];
    bar.querySelector('.fill').style.width = v === undefined ? '0' : pct(v);
    bar.querySelector('.value').textContent = v === undefined ? '-' : v.toFixed(2);
    bar.dataset.value = v === undefined ? '' : String(v);
    bar.classList.toggle('top', fresh && bar.dataset.label === p.label);
  }
  $('rate').textContent = s.prediction_rate ? `${s.prediction_rate.toFixed(1)} /s` : '-';
  $('latency').textContent = fresh
    ? `${p.latency_ms.toFixed(0)} ms (inference ${p.inference_ms.toFixed(0)} ms)` : '-';
  $('model-id').textContent = (s.model && s.model.model_id) || (p && p.model_id) || 'none yet';
  if (p && p.stamp !== lastStamp) {
    lastStamp = p.stamp;
    requestAnimationFrame(() => {
      window.gcShown.push({ stamp: p.stamp, shown: performance.timeOrigin + performance.now() });
      if (window.gcShown.length > 5000) window.gcShown.splice(0, 1000);
    });
  }
}

function renderCamera(c) {
  const parts = [];
  if (c.source !== null) parts.push(`source ${c.source}`);
  if (c.size) parts.push(`${c.size[0]}x${c.size[1]}`);
  if (c.fps) parts.push(`${c.fps.toFixed(1)} FPS`);
  $('camera-status').textContent = parts.join(' · ');
  const stale = $('stale');
  stale.hidden = c.frames && !c.stale;
  stale.textContent = !c.frames ? 'no camera frames yet' : 'input stale: no new camera frames';
  const key = JSON.stringify(c.sources);
  if (key !== sourcesKey) {
    sourcesKey = key;
    const sel = $('source');
    sel.replaceChildren(...c.sources.map((src) => {
      const o = el('option', '', src);
      o.value = src;
      return o;
    }));
    $('camera-form').hidden = c.sources.length === 0;
  }
}

const thumbsShown = {};

function renderSamples(s) {
  for (const row of $('classes').children) {
    const label = row.dataset.label;
    const n = s.counts[label];
    row.querySelector('.count').textContent = n === null || n === undefined ? 'count -' : `${n} samples`;
    row.dataset.count = n === null || n === undefined ? '' : String(n);
    const ids = (s.samples && s.samples[label]) || [];
    const key = ids.join(',');
    if (thumbsShown[label] === key) continue;
    thumbsShown[label] = key;
    row.querySelector('.thumbs').replaceChildren(...ids.map((id) => {
      const fig = el('figure', 'thumb');
      fig.dataset.id = id;
      const img = el('img');
      img.src = `/thumb/${encodeURIComponent(id)}`;
      img.alt = `${label} sample`;
      img.width = 64; img.height = 48;
      const del = el('button', 'delete', '×');
      del.type = 'button';
      del.setAttribute('aria-label', `delete this ${label} sample`);
      del.addEventListener('click', async () => {
        del.disabled = true;
        const r = await post('/api/delete', { id });
        if (r) toast('sample moved to the trash'); else del.disabled = false;
      });
      fig.append(img, del);
      return fig;
    }));
  }
  const d = s.dataset;
  const restore = $('restore');
  restore.disabled = !d || !d.trash_count;
  restore.textContent = d && d.trash_count ? `Restore deleted (${d.trash_count} in trash)` : 'Restore deleted';
  const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;
  $('dataset-status').textContent = d
    ? `${d.total} samples, ${mb(d.size_bytes)}; ${mb(d.free_bytes)} free`
      + (d.recording ? `; recording ${d.recording_label}: ${d.recording_saved}` : '')
    : 'dataset state not received yet';
}

function renderTraining(t) {
  const running = ['sending', 'running', 'canceling'].includes(t.state);
  $('train').disabled = running;
  $('cancel').disabled = !running || t.state === 'canceling';
  $('progress').value = t.progress || 0;
  const status = $('train-status');
  status.dataset.state = t.state;
  if (t.epoch) {
    status.textContent = `${t.state}: epoch ${t.epoch}/${t.epochs}, batch ${t.batch}/${t.batches}, `
      + `${pct(t.progress || 0)}, loss ${t.loss.toFixed(3)}, accuracy ${t.accuracy.toFixed(2)}`;
  } else {
    status.textContent = t.state;
  }
  const result = $('train-result');
  if (t.state === 'succeeded') {
    const val = t.val_accuracy >= 0
      ? `validation accuracy ${t.val_accuracy.toFixed(2)} on ${t.val_images} images` : 'no validation images';
    result.textContent = `model ${t.model_id}: ${t.epochs_completed} epochs, train accuracy `
      + `${t.train_accuracy.toFixed(2)}, ${val}.`;
  } else {
    result.textContent = t.message || '';
  }
  drawChart(t.history || []);
}

function drawChart(history) {
  const c = $('chart');
  const g = c.getContext('2d');
  const w = c.width; const h = c.height; const pad = 24;
  g.clearRect(0, 0, w, h);
  g.font = '12px sans-serif';
  g.fillStyle = '#5f6878';
  if (!history.length) { g.fillText('loss and accuracy per epoch appear here', pad, h / 2); return; }
  const maxLoss = Math.max(1e-6, ...history.map((e) => e.loss || 0));
  const n = history.length;
  const x = (i) => pad + (n === 1 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (n - 1));
  const y = (v) => h - pad - v * (h - 2 * pad);
  const line = (key, scale, color) => {
    g.strokeStyle = color; g.fillStyle = color; g.lineWidth = 2; g.beginPath();
    let started = false;
    history.forEach((e, i) => {
      const v = e[key];
      if (v === undefined || v < 0) return;
      const px = x(i); const py = y(v / scale);
      if (started) g.lineTo(px, py); else g.moveTo(px, py);
      started = true;
      g.fillRect(px - 2, py - 2, 4, 4);
    });
    g.stroke();
  };
  g.strokeStyle = '#d0d7de'; g.lineWidth = 1;
  g.strokeRect(pad, pad, w - 2 * pad, h - 2 * pad);
  line('loss', maxLoss, '#cf222e');
  line('accuracy', 1, '#1f6feb');
  line('val_accuracy', 1, '#1a7f37');
  g.fillStyle = '#cf222e'; g.fillText(`loss (max ${maxLoss.toFixed(2)})`, pad, 14);
  g.fillStyle = '#1f6feb'; g.fillText('train acc', pad + 130, 14);
  g.fillStyle = '#1a7f37'; g.fillText('val acc', pad + 210, 14);
  g.fillStyle = '#5f6878'; g.fillText(`epoch 1..${n}`, w - pad - 70, h - 6);
}

// -- evaluation: per split, accuracy, per-class precision / recall, confusion matrix -------------
function splitBlock(ev, title) {
  const box = el('div', 'split');
  box.dataset.split = ev.split;
  const acc = ev.accuracy >= 0 ? ev.accuracy.toFixed(2) : '-';
  box.append(el('h3', '', `${title}: accuracy ${acc} on ${ev.images} images`));
  const n = ev.class_names.length;
  const table = el('table', 'confusion');
  const head = el('tr');
  head.append(el('th', '', 'true \\ predicted'), ...ev.class_names.map((c) => el('th', '', c)),
    el('th', '', 'recall'));
  table.append(head);
  ev.class_names.forEach((c, i) => {
    const tr = el('tr');
    tr.append(el('th', '', c));
    for (let j = 0; j < n; j += 1) {
      const td = el('td', i === j ? 'diag' : (ev.confusion[i * n + j] ? 'off' : ''),
        String(ev.confusion[i * n + j]));
      tr.append(td);
    }
    tr.append(el('td', 'muted', ev.recall[i] >= 0 ? ev.recall[i].toFixed(2) : '-'));
    table.append(tr);
  });
  const prec = el('tr');
  prec.append(el('th', '', 'precision'),
    ...ev.precision.map((p) => el('td', 'muted', p >= 0 ? p.toFixed(2) : '-')), el('td'));
  table.append(prec);
  const wrap = el('div', 'table-wrap');
  wrap.append(table);
  box.append(wrap);
  if (ev.misclassified.length) {
    box.append(el('p', 'muted', `misclassified: ${ev.misclassified_total}`
      + (ev.misclassified_total > ev.misclassified.length ? ` (first ${ev.misclassified.length} shown)` : '')));
    const strip = el('div', 'thumbs');
    for (const m of ev.misclassified) {
      const fig = el('figure', 'thumb wrong');
      const img = el('img');
      img.src = `/thumb/${encodeURIComponent(m.id)}`;
      img.alt = `${m.label} sample predicted ${m.predicted}`;
      img.width = 64; img.height = 48;
      fig.append(img, el('figcaption', '', `${m.label} → ${m.predicted} ${m.confidence.toFixed(2)}`));
      strip.append(fig);
    }
    box.append(strip);
  }
  return box;
}

let evalKey = '';
function renderEvaluation(s) {
  const e = s.evaluation;
  const running = ['sending', 'running'].includes(e.state);
  $('evaluate').disabled = running;
  $('eval-progress').value = e.progress || 0;
  const status = $('eval-status');
  status.dataset.state = e.state;
  let source = null;
  if (e.state === 'succeeded') {
    source = e;
    status.textContent = `model ${e.model_id}, evaluated now`;
  } else if (e.state !== 'idle') {
    status.textContent = running ? `evaluating: ${e.images_done || 0}/${e.images_total || '?'} images`
      : `${e.state}: ${e.message || ''}`;
  }
  if (!source && s.training.evaluation && s.training.state === 'succeeded') {
    source = s.training.evaluation;
    if (e.state === 'idle') status.textContent = `model ${s.training.model_id}, at the end of its training`;
  }
  const key = JSON.stringify(source);
  if (key === evalKey) return;
  evalKey = key;
  const blocks = [];
  if (source && source.validation) blocks.push(splitBlock(source.validation, 'validation (held out)'));
  if (source && source.training) blocks.push(splitBlock(source.training, 'training images (not held out)'));
  $('eval-splits').replaceChildren(...blocks);
}

// -- model versions ------------------------------------------------------------------------------
let modelsKey = '';
function renderModels(m) {
  const key = JSON.stringify(m);
  if (key === modelsKey) return;
  modelsKey = key;
  const table = $('models');
  if (!m || !m.models.length) { table.replaceChildren(); return; }
  $('models-status').textContent = `${m.models.length} kept; in use: ${m.current_model_id || 'none'}`;
  const head = el('tr');
  head.append(...['model', 'epochs', 'val acc', ''].map((t) => el('th', '', t)));
  const rows = m.models.map((info) => {
    const tr = el('tr');
    tr.dataset.modelId = info.model_id;
    const current = info.model_id === m.current_model_id;
    const use = current ? el('span', 'badge', 'in use') : el('button', 'use secondary', 'Use');
    if (!current) {
      use.type = 'button';
      use.addEventListener('click', async () => {
        use.disabled = true;
        const r = await post('/api/models/select', { model_id: info.model_id });
        if (r) toast(`using model ${info.model_id}`); else use.disabled = false;
      });
    }
    const epochs = info.saved_epoch && info.saved_epoch !== info.total_epochs
      ? `${info.total_epochs} (best ${info.saved_epoch})` : String(info.total_epochs);
    const cell = el('td');
    cell.append(use);
    const id = el('td', 'id', info.model_id);
    id.title = `${info.model_id}, created ${info.created}`
      + (info.parent_model_id ? `, continued from ${info.parent_model_id}` : '');
    tr.append(id, el('td', '', epochs),
      el('td', '', info.val_accuracy >= 0 ? info.val_accuracy.toFixed(2) : '-'), cell);
    return tr;
  });
  table.replaceChildren(head, ...rows);
}

function renderNotices(list) {
  $('notices').replaceChildren(...list.slice().reverse().map((n) => {
    const when = new Date(n.time * 1000).toLocaleTimeString();
    return el('li', n.level, `${when} ${n.node}: ${n.text}`);
  }));
}

// -- gesture events: the stable gesture and the classifier's threshold / smoothing ----------
const sliderBusy = { threshold: false, smoothing: false };  // the user is moving it

function renderGesture(g) {
  if (!g) return;
  const label = g.label === null ? '-' : (g.label === '' ? 'none' : g.label);
  $('gesture-label').textContent = label;
  $('gesture-conf').textContent = g.label ? pct(g.confidence) : '';
  for (const name of ['threshold', 'smoothing']) {
    const input = $(name);
    const known = g[name] !== null && g[name] !== undefined;
    input.disabled = !known;
    if (known && !sliderBusy[name]) input.value = String(g[name]);
    $(`${name}-value`).textContent = known ? Number(input.value).toFixed(2) : '-';
  }
}

function bindGestureSliders() {
  for (const name of ['threshold', 'smoothing']) {
    const input = $(name);
    input.addEventListener('input', () => {
      sliderBusy[name] = true;
      $(`${name}-value`).textContent = Number(input.value).toFixed(2);
    });
    input.addEventListener('change', async () => {
      const body = { threshold: Number($('threshold').value),
                     smoothing: Number($('smoothing').value) };
      const r = await post('/api/gesture', body);
      sliderBusy[name] = false;
      if (r) toast(`gesture threshold ${r.threshold.toFixed(2)}, smoothing ${r.smoothing.toFixed(2)}`);
      if (state) renderGesture(state.gesture);
    });
  }
}

function render(s) {
  state = s;
  $('task').textContent = `task ${s.task}`;
  const key = JSON.stringify(s.classes);
  if (key !== classesKey) { classesKey = key; buildClasses(s.classes); }
  renderPrediction(s);
  renderGesture(s.gesture);
  renderCamera(s.camera);
  renderSamples(s);
  renderTraining(s.training);
  renderEvaluation(s);
  renderModels(s.models);
  renderNotices(s.notices);
}

// -- the state connection ---------------------------------------------------------------------
function connect(delay) {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  const badge = $('connection');
  ws.onopen = () => { badge.textContent = 'live'; badge.className = 'badge'; delay = 500; };
  ws.onmessage = (ev) => {
    try { render(JSON.parse(ev.data)); } catch (err) { console.error(err); }
  };
  ws.onclose = () => {
    badge.textContent = 'offline'; badge.className = 'badge off';
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

document.addEventListener('DOMContentLoaded', () => {
  startVideo();
  connect(500);
  bindGestureSliders();
  $('train-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const epochs = Number($('epochs').value);
    if (!Number.isInteger(epochs) || epochs < 1) { toast('epochs must be a whole number >= 1', true); return; }
    const start = $('start').value;
    if (await post('/api/train', { epochs, start })) toast(`training ${epochs} epochs`);
  });
  $('evaluate').addEventListener('click', async () => {
    if (await post('/api/evaluate', {})) toast('evaluating the current model');
  });
  $('restore').addEventListener('click', async () => {
    const r = await post('/api/restore', {});
    if (r) toast(`${r.restored} samples restored`);
  });
  $('cancel').addEventListener('click', async () => {
    if (await post('/api/train/cancel', {})) toast('cancelling: the previous model stays');
  });
  $('camera-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const source = $('source').value;
    if (await post('/api/camera', { source })) toast(`camera: ${source}`);
  });
});
