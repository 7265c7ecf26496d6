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
// A stream the node refuses (all max_viewers slots taken) or that ends makes the <img> fail
// without saying why: ask the node once with fetch (aborted at once when it streams) and
// show its reason over the video, then try again.
let videoRefused = '';
async function videoProblem() {
  const ctl = new AbortController();
  try {
    const res = await fetch('/stream?fps=1', { signal: ctl.signal, credentials: 'same-origin' });
    if (res.ok) { ctl.abort(); return ''; }
    let data = {};
    try { data = await res.json(); } catch (err) { data = {}; }
    return data.error || `HTTP ${res.status}`;
  } catch (err) {
    return err.name === 'AbortError' ? '' : 'no connection to the robot';
  }
}

function startVideo() {
  const img = $('video');
  img.onerror = async () => {
    videoRefused = await videoProblem();
    if (state) renderCamera(state.camera);
    setTimeout(() => { img.src = `/stream?t=${Date.now()}`; }, 2000);
  };
  img.onload = () => { if (videoRefused) { videoRefused = ''; if (state) renderCamera(state.camera); } };
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
    const r = await post('/api/record/start', { label, fps: Number($('record-fps').value) });
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
    const pager = el('div', 'pager');
    const newer = el('button', 'newer secondary', '‹ newer');
    const older = el('button', 'older secondary', 'older ›');
    newer.type = 'button'; older.type = 'button';
    newer.addEventListener('click', () => showPage(name, (samplePages[name] || {}).page - 1));
    older.addEventListener('click', () => showPage(name, (samplePages[name] || {}).page + 1));
    pager.append(newer, el('span', 'muted range', ''), older);
    row.append(add, hold, undo, el('div', 'thumbs'), pager);
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
  // no new prediction for a while (camera or classifier stopped): the last one is not live
  const stale = Boolean(p && (s.camera.stale || s.prediction_stale));
  const fresh = p && !stale;
  $('top').dataset.stale = stale ? 'true' : '';
  $('top-label').textContent = fresh ? p.label : (stale ? `${p.label}?` : '-');
  $('top-conf').textContent = fresh ? pct(p.confidence) : (stale ? 'stale: no new predictions' : '');
  const unsure = Boolean(fresh && p.trusted === false);
  $('top').dataset.unsure = unsure ? 'true' : '';
  $('unsure').hidden = !unsure;
  $('overlay').textContent = fresh ? `${p.label} ${pct(p.confidence)}${unsure ? ' (unsure)' : ''}` : '';
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
  stale.hidden = !videoRefused && c.frames && !c.stale;
  stale.textContent = videoRefused ? `video refused: ${videoRefused}`
    : (!c.frames ? 'no camera frames yet' : 'input stale: no new camera frames');
  stale.dataset.refused = videoRefused ? 'true' : '';
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

// Every sample is reachable: each class shows one page of thumbnails (newest first) from
// /api/samples, fetched again when the dataset changes; older / newer page through them.
const thumbsShown = {};
const samplePages = {};   // label -> the page shown {page, pages, total, page_size, ids}
const sampleWant = {};    // label -> the page asked for
let samplesKey = '';

async function showPage(label, page) {
  sampleWant[label] = Math.max(0, page || 0);
  let res;
  try {
    res = await fetch(`/api/samples?label=${encodeURIComponent(label)}&page=${sampleWant[label]}`,
      { credentials: 'same-origin' });
  } catch (err) { return; }
  if (!res.ok) return;
  const data = await res.json();
  samplePages[label] = data;
  const row = document.querySelector(`#classes .class[data-label="${CSS.escape(label)}"]`);
  if (row) drawThumbs(row, label, data);
}

function drawThumbs(row, label, data) {
  const pager = row.querySelector('.pager');
  const first = data.page * data.page_size;
  pager.querySelector('.range').textContent = data.total
    ? `${first + 1}–${first + data.ids.length} of ${data.total}` : 'no samples';
  pager.querySelector('.newer').disabled = data.page <= 0;
  pager.querySelector('.older').disabled = data.page >= data.pages - 1;
  pager.dataset.page = String(data.page);
  pager.dataset.pages = String(data.pages);
  const ids = data.ids;
  const key = ids.join(',');
  if (thumbsShown[label] === key) return;
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

function renderSamples(s) {
  for (const row of $('classes').children) {
    const label = row.dataset.label;
    const n = s.counts[label];
    row.querySelector('.count').textContent = n === null || n === undefined ? 'count -' : `${n} samples`;
    row.dataset.count = n === null || n === undefined ? '' : String(n);
  }
  // the dataset changed (or first state): fetch each class's page again
  const key = JSON.stringify([s.counts, s.dataset && s.dataset.revision, s.samples]);
  if (key !== samplesKey) {
    samplesKey = key;
    for (const label of s.classes) showPage(label, sampleWant[label] || 0);
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
  const current = s.model && s.model.model_id;
  // the figures of the last training only while its model is the one in use
  if (!source && s.training.evaluation && s.training.state === 'succeeded'
      && (!current || s.training.model_id === current)) {
    source = s.training.evaluation;
    if (e.state === 'idle') status.textContent = `model ${s.training.model_id}, at the end of its training`;
  } else if (!source && e.state === 'idle') {
    status.textContent = e.outdated_model_id
      ? `the last evaluation was of model ${e.outdated_model_id}; evaluate to measure ${current}`
      : 'Figures of the last training appear here; evaluate to measure the current model again.';
  }
  status.dataset.model = source ? (source.model_id || s.training.model_id || '') : '';
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
    // the id without the task's name in front (the same for every version): date, time and
    // hash tell versions apart; whole, wrapped when narrow, never cut off
    const prefix = state && state.task ? `${state.task}-` : '';
    const short = info.model_id.startsWith(prefix) ? info.model_id.slice(prefix.length) : info.model_id;
    const id = el('td', 'id', short);
    id.title = `${info.model_id}, created ${info.created}`
      + (info.parent_model_id ? `, continued from ${info.parent_model_id}` : '');
    tr.append(id, el('td', '', epochs),
      el('td', '', info.val_accuracy >= 0 ? info.val_accuracy.toFixed(2) : '-'), cell);
    return tr;
  });
  table.replaceChildren(head, ...rows);
}

// -- review queue: the classifier's least sure frames, labelled or discarded here -------------
let reviewKey = '';
function renderReview(s) {
  const q = s.review;
  const key = JSON.stringify([q, s.classes]);
  if (key === reviewKey) return;
  reviewKey = key;
  const items = (q && q.items) || [];
  $('review-status').textContent = !q ? 'no review queue yet (is the classifier running?)'
    : `${items.length} of at most ${q.capacity} frames` + (items.length ? '' : ': nothing to review');
  $('review').replaceChildren(...items.map((item) => {
    const fig = el('figure', 'review-item');
    fig.dataset.id = String(item.id);
    const img = el('img');
    // A frame that fails to load (an answer lost between the nodes, the classifier busy) is
    // asked for again, four times at most, 1, 2, 4 and 8 s later: the queue shown does not
    // change while nobody labels it, so nothing else would load it. A frame no longer queued
    // also fails; the next queue state then removes its element and the retries stop.
    let tries = 0;
    img.onerror = () => {
      if (++tries > 4) return;
      setTimeout(() => { if (img.isConnected) img.src = `/review/${item.id}?try=${tries}`; },
        500 * 2 ** tries);
    };
    img.src = `/review/${item.id}`;
    img.alt = `a frame the classifier took for ${item.label}`;
    img.width = 128; img.height = 96;
    const guess = `${item.label} ${pct(item.confidence)}` + (item.trusted ? '' : ', unsure');
    const buttons = el('div', 'row');
    const send = async (label, discard, button) => {
      button.disabled = true;
      const r = await post('/api/review', { id: item.id, label, discard });
      if (r) toast(discard ? 'frame discarded' : `stored under ${label}: ${r.count} samples`);
      else button.disabled = false;
    };
    for (const name of s.classes) {
      const b = el('button', 'label secondary', name);
      b.type = 'button';
      b.dataset.label = name;
      b.addEventListener('click', () => send(name, false, b));
      buttons.append(b);
    }
    const d = el('button', 'discard secondary', 'Discard');
    d.type = 'button';
    d.addEventListener('click', () => send('', true, d));
    buttons.append(d);
    fig.append(img, el('figcaption', '', `guess: ${guess}`), buttons);
    return fig;
  }));
}

function renderNotices(list) {
  $('notices').replaceChildren(...list.slice().reverse().map((n) => {
    const when = new Date(n.time * 1000).toLocaleTimeString();
    return el('li', n.level, `${when} ${n.node}: ${n.text}`);
  }));
}

// -- gesture events: the stable gesture and the classifier's threshold / smoothing ----------
const sliderBusy = { threshold: false, smoothing: false };  // the user is moving it
// What this page last set, kept over older values from a state sent before the classifier
// took it (for 5 s at most): otherwise the other slider's next change sends the old value back.
const sliderSet = { threshold: null, smoothing: null };

function renderGesture(g) {
  if (!g) return;
  const label = g.label === null ? '-' : (g.label === '' ? 'none' : g.label);
  $('gesture-label').textContent = label;
  $('gesture-conf').textContent = g.label ? pct(g.confidence) : '';
  for (const name of ['threshold', 'smoothing']) {
    const input = $(name);
    const known = g[name] !== null && g[name] !== undefined;
    input.disabled = !known;
    const set = sliderSet[name];
    if (set && (g[name] === set.value || Date.now() > set.until)) sliderSet[name] = null;
    if (known && !sliderBusy[name] && !sliderSet[name]) input.value = String(g[name]);
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
      if (r) {
        for (const key of ['threshold', 'smoothing']) {
          sliderSet[key] = { value: r[key], until: Date.now() + 5000 };
          if (state && state.gesture) state.gesture[key] = r[key];
        }
      }
      if (r) toast(`gesture threshold ${r.threshold.toFixed(2)}, smoothing ${r.smoothing.toFixed(2)}`);
      if (state) renderGesture(state.gesture);
    });
  }
}

function renderAccess(a) {
  const box = $('access-warning');
  const text = (a && a.warning) || '';
  box.hidden = !text;
  box.textContent = text;
}

function renderLimits(l) {
  if (!l) return;
  const epochs = $('epochs');
  if (l.max_epochs && epochs.max !== String(l.max_epochs)) {
    epochs.max = String(l.max_epochs);
    epochs.title = `1 to ${l.max_epochs} (the trainer's max_epochs)`;
    if (Number(epochs.value) > l.max_epochs) epochs.value = String(l.max_epochs);
  }
}

// -- dataset and model files -----------------------------------------------------------------
// An upload is the file itself with its own content type (application/zip, application/
// octet-stream), not a form: a cross-site form cannot send either type. Shows the progress
// and a refusal in `out` (data-outcome running / refused); the JSON answer, or null.
async function sendFile(file, url, type, button, out, what) {
  button.disabled = true;
  out.dataset.outcome = 'running';
  out.textContent = `sending ${file.name} (${(file.size / 1e6).toFixed(1)} MB) for ${what} ...`;
  let res = null;
  let data = {};
  try {
    res = await fetch(url, {
      method: 'POST', headers: { 'Content-Type': type }, body: file, credentials: 'same-origin',
    });
    try { data = await res.json(); } catch (err) { data = { error: `HTTP ${res.status}` }; }
  } catch (err) {
    data = { error: `no connection to the robot: ${err.message}` };
  } finally {
    button.disabled = false;
  }
  if (!res || !res.ok) {
    out.dataset.outcome = 'refused';
    out.textContent = `${what} refused: ${data.error || 'HTTP ' + (res && res.status)}`;
    return null;
  }
  return data;
}

// The answer counts the files added and refused, with the first reasons.
async function importDataset(ev) {
  ev.preventDefault();
  const file = $('import-file').files[0];
  if (!file) return;
  const out = $('import-result');
  const list = $('import-refusals');
  list.replaceChildren();
  const data = await sendFile(file, '/api/dataset/import', 'application/zip', $('import'), out,
                              'import');
  if (!data) return;
  const kinds = Object.entries(data.by_kind || {}).map(([k, n]) => `${k}: ${n}`).join(', ');
  out.dataset.outcome = 'done';
  out.dataset.added = String(data.added);
  out.dataset.refused = String(data.refused);
  out.textContent = `${data.added} added, ${data.refused} refused` + (kinds ? ` (${kinds})` : '');
  for (const r of data.refusals || []) list.append(el('li', '', `${r.path}: ${r.reason}`));
  if (data.refused > (data.refusals || []).length) {
    list.append(el('li', 'muted', `... and ${data.refused - data.refusals.length} more`));
  }
}

// A model file: the trainer checks it as any model file and makes it current.
async function uploadModel(ev) {
  ev.preventDefault();
  const file = $('model-file').files[0];
  if (!file) return;
  const out = $('upload-model-result');
  const data = await sendFile(file, '/api/model/upload', 'application/octet-stream',
                              $('upload-model'), out, 'upload');
  if (!data) return;
  out.dataset.outcome = 'done';
  out.dataset.modelId = data.model_id;
  out.textContent = `model ${data.model_id} is current (uploaded ${file.name})`;
}

function renderFiles(s) {
  const model = s.model && s.model.model_id;
  const link = $('download-model');
  link.classList.toggle('disabled', !model);
  link.title = model ? `model ${model}` : 'no model yet: train one first';
}

function render(s) {
  state = s;
  renderFiles(s);
  renderLimits(s.limits);
  $('task').textContent = `task ${s.task}`;
  renderAccess(s.access);
  const key = JSON.stringify(s.classes);
  if (key !== classesKey) { classesKey = key; buildClasses(s.classes); }
  renderPrediction(s);
  renderGesture(s.gesture);
  renderCamera(s.camera);
  renderSamples(s);
  renderTraining(s.training);
  renderEvaluation(s);
  renderModels(s.models);
  renderReview(s);
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
    const most = Number($('epochs').max);
    if (!Number.isInteger(epochs) || epochs < 1 || epochs > most) {
      toast(`epochs must be a whole number in 1..${most}`, true); return;
    }
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
  $('add-class-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('new-class');
    const button = $('add-class');
    button.disabled = true;
    const r = await post('/api/classes', { name: input.value });
    button.disabled = false;
    if (r) { input.value = ''; toast(r.message); }
  });
  $('import-form').addEventListener('submit', importDataset);
  $('upload-model-form').addEventListener('submit', uploadModel);
  $('camera-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const source = $('source').value;
    if (await post('/api/camera', { source })) toast(`camera: ${source}`);
  });
});
