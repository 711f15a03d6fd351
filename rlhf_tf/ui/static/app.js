// rlhf_tf preference UI. The server holds all state (votes, leases); this
// page only shows the leased pair and posts answers. The inspector is signed
// in by their personal link (a session cookie); every vote carries the
// pair's signed lease and a random vote_id, so a retry after a network error
// is stored once. With several views the pair turns: both sides always show
// the same view (a turn is shown once both images of the new view, and a
// shown preset's, have loaded), and the vote names the view shown.
'use strict';

const JH_KEY = 'rlhf_tf.showJH';
const PRESET_KEY = 'rlhf_tf.preset';
const KEYS = { ArrowLeft: 'left', ArrowRight: 'right', ArrowDown: 'equal',
  '=': 'equal', b: 'both_bad', B: 'both_bad', s: 'skip', S: 'skip' };
const LABELS = { left: 'left preferred', right: 'right preferred',
  equal: 'equal', both_bad: 'both bad', skip: 'skipped' };
// Turning (the arrow keys are vote keys): ',' turns the object left (its
// front moves left, as when dragging left), '.' right.
const TURN_KEYS = { ',': 1, '<': 1, '.': -1, '>': -1 };
const DRAG_STEP_PX = 40;  // a horizontal drag of this many pixels: one view

const $ = (id) => document.getElementById(id);
const state = { inspector: null, pair: null, busy: false, undoVoteId: null,
  loaded: 0, view: 0, target: 0, loads: new Map(), viewsLoaded: new Set() };

function randomId() {
  // crypto.getRandomValues also works on plain http (randomUUID does not).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function setStatus(text, isError) {
  const el = $('status');
  el.textContent = text || '';
  el.classList.toggle('error', !!isError);
}

async function api(path, body) {
  // Retries only network failures (same body: the vote_id makes it safe).
  let lastError;
  for (let attempt = 0; attempt < 5; attempt++) {
    let response;
    try {
      response = await fetch(path, { method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body) });
    } catch (e) {
      lastError = e;
      setStatus('connection lost, retrying…', true);
      await new Promise((r) => setTimeout(r, 400 * 2 ** attempt));
      continue;
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }
  throw new Error(`server unreachable (${lastError})`);
}

function setReady(ready) {
  $('stage').dataset.ready = ready ? '1' : '0';
  for (const b of document.querySelectorAll('.controls button.choice')) {
    b.disabled = !ready;
  }
}

function showProgress(p) {
  if (!p) return;
  $('progress-text').textContent = `${p.votes} / ${p.target}` +
    (p.votes >= p.target ? '  ✓ target reached' : '');
  $('meter-fill').style.width = `${Math.min(100, 100 * p.votes / p.target)}%`;
}

function onImageLoaded() {
  state.loaded += 1;
  this.parentElement.classList.remove('loading');
  if (state.loaded >= 2 && state.pair) setReady(true);
}

function onImageError() {
  this.parentElement.classList.remove('loading');
  setStatus('a rendering failed to load; press S to skip', true);
}

function numViews() {
  return state.pair && state.pair.views ? state.pair.views.length : 1;
}

function presetUrl(index, view) {
  const base = `/preset/${encodeURIComponent(state.pair.scene_id)}/${index}.png`;
  return view ? `${base}?view=${view}` : base;
}

function presetIndex() {
  const select = $('preset-select');
  return select && select.value !== '' ? select.value : null;
}

function loadImage(url) {
  // Resolves when the image is fetched and decoded (rejects on an error).
  const img = new Image();
  img.src = url;
  return img.decode().then(() => img);
}

// The images of one view of the shown pair (and of the shown preset), loaded
// once per pair; a promise.
function loadView(view) {
  const preset = presetIndex();
  const key = `${view}:${preset}`;
  if (!state.loads.has(key)) {
    const v = state.pair.views[view];
    const urls = [v.left_url, v.right_url];
    if (preset !== null) urls.push(presetUrl(preset, view));
    const done = Promise.all(urls.map(loadImage));
    done.then(() => { if (state.loads.get(key) === done) countLoaded(view); },
      () => { if (state.loads.get(key) === done) state.loads.delete(key); });
    state.loads.set(key, done);  // a failed view is asked for again later
  }
  return state.loads.get(key);
}

// How many views of the pair are ready to be turned to (shown on the page).
function countLoaded(view) {
  const n = numViews();
  const el = $('turn');
  if (!el) return;
  state.viewsLoaded.add(view);
  const k = state.viewsLoaded.size;
  el.dataset.loaded = String(k);
  $('views-loaded').textContent = k >= n ? '' : `${k}/${n} loaded`;
}

// Preloads every view of the pair, nearest to view 0 first, one at a time
// (the server renders in the order they will be needed).
async function preloadViews(pair) {
  const n = numViews();
  for (let step = 1; step <= n / 2; step++) {
    for (const view of new Set([step % n, (n - step) % n])) {
      if (state.pair !== pair) return;
      await loadView(view).catch(() => {});
    }
  }
}

function showViewLabel() {
  const el = $('turn');
  if (!el || !state.pair) return;
  const v = state.pair.views[state.view];
  const label = v.azimuth === null ? `view ${state.view + 1}` :
    `${Math.round(v.azimuth * 10) / 10}°`;
  el.dataset.view = String(state.view);
  $('view-label').textContent = state.target === state.view ? label :
    `${label} → …`;
  for (const badge of document.querySelectorAll('.view-badge')) {
    badge.textContent = label;
  }
}

// Shows view `view` on both sides at once (their images are loaded).
function displayView(view) {
  const v = state.pair.views[view];
  $('left-img').src = v.left_url;
  $('right-img').src = v.right_url;
  state.view = view;
  showPreset();
  showViewLabel();
}

async function turn(delta) {
  const pair = state.pair;
  const n = numViews();
  if (!pair || n < 2) return;
  state.target = ((state.target + delta) % n + n) % n;
  const view = state.target;
  showViewLabel();
  try {
    await loadView(view);
  } catch (e) {
    if (state.pair === pair) setStatus('a view failed to load', true);
    return;
  }
  if (state.pair === pair && state.target === view) displayView(view);
}

function onDrag(e) {
  if (!state.drag || e.pointerId !== state.drag.id) return;
  const steps = Math.trunc((e.clientX - state.drag.x) / DRAG_STEP_PX);
  if (steps) {
    state.drag.x += steps * DRAG_STEP_PX;
    turn(-steps);  // dragging right turns the object right
  }
}

function startDrag(e) {
  if (numViews() < 2 || e.button !== 0) return;
  e.preventDefault();
  state.drag = { id: e.pointerId, x: e.clientX };
  e.currentTarget.setPointerCapture(e.pointerId);
}

function endDrag(e) {
  if (state.drag && e.pointerId === state.drag.id) state.drag = null;
}

function showPair(pair) {
  state.pair = pair;
  state.loaded = 0;
  state.view = 0;
  state.target = 0;
  state.loads = new Map();
  state.viewsLoaded = new Set();
  if ($('turn')) $('turn').dataset.loaded = '0';
  if ($('views-loaded')) $('views-loaded').textContent = '';
  setReady(false);
  for (const f of document.querySelectorAll('.frame')) {
    f.classList.remove('picked', 'tie', 'both-bad');
  }
  $('stage').classList.toggle('finished', !pair);
  $('done').hidden = !!pair;
  if (!pair) { setStatus('all pairs done'); return; }
  for (const side of ['left', 'right']) {
    const img = $(`${side}-img`);
    if (img.getAttribute('src') === pair[`${side}_url`] && img.complete) {
      state.loaded += 1;
      continue;
    }
    img.parentElement.classList.add('loading');
    img.src = pair[`${side}_url`];
  }
  if (pair.jh_url && $('jh-img')) $('jh-img').src = pair.jh_url;
  showPreset();
  showViewLabel();
  if (state.loaded >= 2) setReady(true);
  if (numViews() > 1) {
    loadView(0).then(() => preloadViews(pair), () => preloadViews(pair));
  }
}

function afterAnswer(data) {
  showProgress(data.progress);
  state.undoVoteId = data.undo_vote_id;
  $('undo').disabled = data.undo_vote_id === null;
}

async function loadNext() {
  const data = await api('/api/next', {});
  afterAnswer(data);
  showPair(data.pair);
}

function flash(choice) {
  if (choice === 'left' || choice === 'right') {
    $(`${choice}-view`).querySelector('.frame').classList.add('picked');
  } else if (choice === 'equal' || choice === 'both_bad') {
    const cls = choice === 'equal' ? 'tie' : 'both-bad';
    for (const f of document.querySelectorAll('.frame')) f.classList.add(cls);
  }
}

async function vote(choice) {
  const pair = state.pair;
  if (state.busy || !pair || $('stage').dataset.ready !== '1') return;
  state.busy = true;
  setReady(false);
  flash(choice);
  try {
    const data = await api('/api/vote', { lease: pair.lease,
      scene_id: pair.scene_id, pair_id: pair.pair_id,
      left_action: pair.left_action, right_action: pair.right_action,
      choice, view: state.view, vote_id: randomId() });
    afterAnswer(data);
    setStatus(`saved: ${LABELS[choice]}`);
    await loadNext();
  } catch (e) {
    setStatus(`not saved: ${e.message}`, true);
    setReady(true);
  } finally {
    state.busy = false;
  }
}

async function undo() {
  if (state.busy || !state.inspector || state.undoVoteId === null) return;
  state.busy = true;
  try {
    const body = {};
    if (state.undoVoteId) body.vote_id = state.undoVoteId;
    const data = await api('/api/undo', body);
    afterAnswer(data);
    setStatus(`undone: ${LABELS[data.undone.choice]} — answer this pair again`);
    showPair(data.pair);
  } catch (e) {
    setStatus(`undo failed: ${e.message}`, true);
  } finally {
    state.busy = false;
  }
}

function setJH(on) {
  if (!$('jh-toggle')) return;
  $('jh-toggle').checked = on;
  $('jh-panel').hidden = !on;
  document.body.classList.toggle('with-jh', on);
  localStorage.setItem(JH_KEY, on ? '1' : '0');
}

// A reference preset (InVesalius / Slicer) rendered on the pair's scene; it
// is never voted on.
function showPreset() {
  const select = $('preset-select');
  if (!select) return;
  const index = select.value;
  const on = index !== '' && !!state.pair;
  $('preset-panel').hidden = !on;
  document.body.classList.toggle('with-preset', on);
  if (!on) return;
  $('preset-name').textContent = select.options[select.selectedIndex].text;
  const url = presetUrl(index, state.view);
  if ($('preset-img').getAttribute('src') !== url) $('preset-img').src = url;
}

function setPreset(index) {
  const select = $('preset-select');
  if (!select) return;
  select.value = index;
  if (select.selectedIndex < 0) select.value = '';
  localStorage.setItem(PRESET_KEY, select.value);
  showPreset();
}

function nextPreset() {
  const select = $('preset-select');
  setPreset(select.options[(select.selectedIndex + 1) %
    select.options.length].value);
}

function askToSignIn() {
  $('name-dialog').hidden = false;
}

async function start(name) {
  state.inspector = name;
  $('name-dialog').hidden = true;
  setStatus('');
  try {
    await loadNext();
  } catch (e) {
    setStatus(e.message, true);
    if (/signed in|personal link/.test(e.message)) askToSignIn();
  }
}

function onKey(e) {
  if (!$('name-dialog').hidden || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target instanceof HTMLInputElement && e.target.type !== 'checkbox') return;
  if (e.target instanceof HTMLSelectElement) return;  // its own arrow keys
  if (TURN_KEYS[e.key] && $('turn')) {  // held down: keeps turning
    e.preventDefault();
    turn(TURN_KEYS[e.key]);
    return;
  }
  if (e.repeat) { e.preventDefault(); return; }
  if (KEYS[e.key]) { e.preventDefault(); vote(KEYS[e.key]); }
  else if (e.key === 'u' || e.key === 'U') { e.preventDefault(); undo(); }
  else if ((e.key === 'j' || e.key === 'J') && $('jh-toggle')) {
    setJH(!$('jh-toggle').checked);
  } else if ((e.key === 'p' || e.key === 'P') && $('preset-select')) {
    e.preventDefault();
    nextPreset();
  }
}

function init() {
  for (const side of ['left', 'right']) {
    $(`${side}-img`).addEventListener('load', onImageLoaded);
    $(`${side}-img`).addEventListener('error', onImageError);
  }
  for (const b of document.querySelectorAll('button.choice')) {
    b.addEventListener('click', () => vote(b.dataset.choice));
  }
  $('undo').addEventListener('click', undo);
  if ($('turn')) {
    for (const [id, delta] of [['turn-left', 1], ['turn-right', -1]]) {
      $(id).addEventListener('click', (e) => {
        e.currentTarget.blur();  // keys stay with the page
        turn(delta);
      });
    }
    for (const frame of document.querySelectorAll('.view .frame')) {
      frame.addEventListener('pointerdown', startDrag);
      frame.addEventListener('pointermove', onDrag);
      frame.addEventListener('pointerup', endDrag);
      frame.addEventListener('pointercancel', endDrag);
    }
  }
  if ($('jh-toggle')) {
    $('jh-toggle').addEventListener('change', (e) => setJH(e.target.checked));
    setJH(localStorage.getItem(JH_KEY) === '1');
  }
  if ($('preset-select')) {
    $('preset-select').addEventListener('change', (e) => {
      setPreset(e.target.value);
      e.target.blur();  // the arrow keys vote again, not pick presets
    });
    setPreset(localStorage.getItem(PRESET_KEY) || '');
  }
  document.addEventListener('keydown', onKey);
  setReady(false);
  $('undo').disabled = true;
  const name = document.body.dataset.inspector;
  if (name) start(name); else askToSignIn();
}

init();
