// The stationfleet dashboard page: plain JavaScript, no library, no network
// beyond this loopback server. The server pushes every change of the
// rollouts as Server-Sent Events (/api/events); the page redraws from them.
// Text from the cluster is only ever set as text (never as HTML).
'use strict';

const token = document.querySelector('meta[name="sf-token"]').content;
const allNamespaces = document.querySelector('meta[name="sf-namespace"]').content === '';
const outcomes = ['Updated', 'Failed', 'InProgress', 'Pending', 'Skipped'];
const maxStationRows = 500;

const state = {
  rollouts: new Map(), // "ns/name" -> view
  loaded: false,
  flash: null, // {key, ok, text}
  stations: null, // [{...}] of the rollout page
  stationsError: '',
  stationsAt: 0,
  filter: { outcome: '', tags: {} },
  offset: 0, // the server's clock minus the browser's, in ms
};

// nowMs is the server's time: ages and the chart follow its clock.
function nowMs() { return Date.now() + state.offset; }

function route() {
  const m = location.pathname.match(/^\/rollouts\/([^/]+)\/([^/]+)$/);
  if (m) return { kind: 'rollout', ns: decodeURIComponent(m[1]), name: decodeURIComponent(m[2]) };
  return { kind: 'overview' };
}
const page = route();

// h builds an element: h('td', {class: 'num', text: '3'}, child, ...).
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function s(tag, attrs, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') el.textContent = v; else el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid) el.append(kid);
  return el;
}

function ago(t) {
  if (!t) return '';
  const d = (nowMs() - new Date(t).getTime()) / 1000;
  const abs = Math.abs(d);
  let txt;
  if (abs < 60) txt = Math.round(abs) + 's';
  else if (abs < 3600) txt = Math.round(abs / 60) + 'm';
  else if (abs < 86400) txt = (abs / 3600).toFixed(1).replace(/\.0$/, '') + 'h';
  else txt = (abs / 86400).toFixed(1).replace(/\.0$/, '') + 'd';
  return d >= 0 ? txt + ' ago' : 'in ' + txt;
}

function clock(t) {
  const d = new Date(t);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function rolloutURL(v) {
  return '/rollouts/' + encodeURIComponent(v.namespace) + '/' + encodeURIComponent(v.name);
}

// bar is a stacked bar of updated, failed and in-progress out of total.
function bar(total, updated, failed, inProgress, wide) {
  const pct = (n) => total > 0 ? Math.min(100, (100 * n) / total) + '%' : '0%';
  const b = h('div', { class: 'bar' + (wide ? ' wide' : ''), role: 'img',
    'aria-label': `${updated} updated, ${failed} failed, ${inProgress} in progress of ${total}` });
  for (const [cls, n] of [['u', updated], ['f', failed], ['p', inProgress]]) {
    const seg = h('span', { class: cls });
    seg.style.width = pct(n);
    b.append(seg);
  }
  return b;
}

function badge(text) { return h('span', { class: 'badge ' + text, text }); }

function miniSteps(v) {
  return h('div', { class: 'steps' }, v.steps.map((st) => {
    const title = `step ${st.index}: ${st.label} — ${st.detail}`;
    if (st.kind !== 'batch') {
      return h('div', { class: `step pause ${st.state}`, title, text: st.kind === 'pause' ? '' : '•' });
    }
    const b = st.batch;
    return h('div', { class: `step ${st.state}`, title, 'data-step': st.index },
      b ? bar(b.size, b.updated, b.failed, b.inProgress) : bar(1, 0, 0, 0));
  }));
}

const actionText = {
  pause: 'No further station twin is written until the rollout is resumed; stations already written keep going and their outcomes are still reported.',
  resume: 'The rollout goes on: spec.paused is cleared and a pause step without duration is passed.',
  abort: 'The rollout stops and restores, on every station it wrote, the firmware the station had before. An abort cannot be undone.',
};

function actionButtons(v) {
  return h('div', { class: 'actions' }, ['pause', 'resume', 'abort'].map((act) => {
    const why = v.refusals && v.refusals[act];
    return h('button', {
      'data-action': act, 'data-rollout': v.namespace + '/' + v.name,
      class: act === 'abort' ? 'abortBtn' : '',
      disabled: !!why, title: why || `${act} ${v.namespace}/${v.name}`,
      text: act[0].toUpperCase() + act.slice(1),
      onclick: () => confirmAction(v, act),
    });
  }));
}

function confirmAction(v, act) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = `${act[0].toUpperCase() + act.slice(1)} rollout ${v.namespace}/${v.name}?`;
  document.getElementById('confirm-text').textContent = actionText[act];
  const ok = document.getElementById('confirm-ok');
  ok.textContent = act[0].toUpperCase() + act.slice(1);
  ok.className = act === 'resume' ? 'primary' : 'danger';
  dlg.returnValue = '';
  dlg.onclose = () => { if (dlg.returnValue === 'ok') runAction(v, act); };
  dlg.showModal();
}

async function runAction(v, act) {
  const key = v.namespace + '/' + v.name;
  let res, body;
  try {
    res = await fetch(`/api/rollouts/${encodeURIComponent(v.namespace)}/${encodeURIComponent(v.name)}/${act}`, {
      method: 'POST', headers: { 'X-Stationfleet-Token': token },
    });
    body = await res.json().catch(() => ({ error: res.statusText }));
  } catch (e) {
    state.flash = { key, ok: false, text: `${act} ${key}: the dashboard server did not answer: ${e}` };
    render();
    return;
  }
  if (res.ok) {
    state.flash = { key, ok: true, text: body.message };
  } else {
    const label = { 403: 'Forbidden (403)', 409: 'Refused (409)', 404: 'Not found (404)' }[res.status] || `Error (${res.status})`;
    state.flash = { key, ok: false, text: `${label}: ${body.error}` };
  }
  render();
}

function flashFor(key) {
  const f = state.flash;
  if (!f || (key && f.key !== key)) return null;
  return h('div', { class: 'flash ' + (f.ok ? 'ok' : 'error'), id: 'flash', role: 'status', text: f.text });
}

function renderOverview() {
  const list = [...state.rollouts.values()].sort((a, b) => (a.namespace + '/' + a.name).localeCompare(b.namespace + '/' + b.name));
  const root = h('div', {}, h('h1', { text: 'Firmware rollouts' }), flashFor(null));
  if (!list.length) {
    root.append(h('div', { class: 'empty', text: 'No FirmwareRollout here yet. Apply one with kubectl apply -f rollout.yaml; it appears at once.' }));
    return root;
  }
  const head = ['Rollout', allNamespaces ? 'Namespace' : null, 'Package', 'Phase', 'Progress', 'Steps', 'Failed', 'Status', 'Age', ''];
  const rows = list.map((v) => h('tr', { 'data-rollout': v.namespace + '/' + v.name },
    h('td', {}, h('a', { href: rolloutURL(v), text: v.name })),
    allNamespaces ? h('td', { text: v.namespace }) : null,
    h('td', { class: 'mono', text: v.package }),
    h('td', {}, badge(v.phase), v.paused && v.phase !== 'Paused' ? ' (pausing)' : '', v.stale ? h('span', { class: 'muted', title: 'the controller has not acted on the latest spec yet', text: ' (spec changed)' }) : null),
    h('td', { class: 'progress-cell' }, h('div', { class: 'progress' }, bar(v.targets, v.updated, v.failed, v.inProgress), h('span', { class: 'mono progress-text', text: v.progress }))),
    h('td', {}, miniSteps(v)),
    h('td', { class: 'num' + (v.failed ? ' failed' : ''), text: v.failed }),
    h('td', { class: 'msg' }, h('span', { text: v.message || v.reason || '' })),
    h('td', { class: 'muted age', title: clock(v.created), text: ago(v.created) }),
    h('td', {}, actionButtons(v)),
  ));
  root.append(h('table', { id: 'rollouts' },
    h('thead', {}, h('tr', {}, head.filter((x) => x !== null).map((t) => h('th', { text: t })))),
    h('tbody', {}, rows)));
  return root;
}

// chart draws the observed progress: updated, failed and in progress over
// time, each a step line held until now (or the completion).
function chart(v) {
  const W = 860, H = 240, L = 46, R = 16, T = 14, B = 34;
  const hist = v.history || [];
  const t0 = new Date(hist.length ? hist[0].t : v.created).getTime();
  let t1 = v.completionTime ? new Date(v.completionTime).getTime() : nowMs();
  if (hist.length) t1 = Math.max(t1, new Date(hist[hist.length - 1].t).getTime());
  if (t1 <= t0) t1 = t0 + 1000;
  const ymax = Math.max(v.targets, 1, ...hist.map((p) => p.updated + p.failed + p.inProgress));
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (n) => T + (1 - n / ymax) * (H - T - B);
  const svgEl = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', id: 'progress-chart',
    'aria-label': `progress of ${v.name} over time` });
  for (const frac of [0, 0.5, 1]) {
    const n = Math.round(ymax * frac);
    svgEl.append(s('line', { x1: L, x2: W - R, y1: y(n), y2: y(n), stroke: '#e3e7ed' }));
    svgEl.append(s('text', { x: L - 6, y: y(n) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#6b7585', text: String(n) }));
  }
  if (v.targets > 0) {
    svgEl.append(s('text', { x: W - R, y: y(v.targets) - 3, 'text-anchor': 'end', 'font-size': 11, fill: '#6b7585', text: `${v.targets} targets` }));
  }
  // The past from the status' timestamps (the start, each finished batch)
  // is drawn as straight dashed lines up to the first change the dashboard
  // saw; from there each series is a step line held until now.
  const series = [['updated', '#2e9e5b'], ['failed', '#d64545'], ['inProgress', '#e0a526']];
  const firstSeen = hist.findIndex((p) => !p.derived);
  if (firstSeen > 0) {
    const fx = x(new Date(hist[firstSeen].t).getTime());
    svgEl.append(s('line', { x1: fx, x2: fx, y1: T, y2: H - B, stroke: '#9aa5b4', 'stroke-dasharray': '2 3' }));
    const right = fx > W * 0.7;
    svgEl.append(s('text', { x: right ? fx - 4 : fx + 4, y: T + 10, 'text-anchor': right ? 'end' : 'start', 'font-size': 11, fill: '#6b7585', text: 'dashboard started' }));
  }
  for (const [field, color] of series) {
    if (!hist.length) break;
    const pt = (p) => [x(new Date(p.t).getTime()), y(p[field])];
    if (firstSeen !== 0) {
      const past = hist.slice(0, firstSeen < 0 ? hist.length : firstSeen + 1);
      svgEl.append(s('path', { d: past.map((p, i) => (i ? 'L' : 'M') + pt(p).join(',')).join(''), fill: 'none',
        stroke: color, 'stroke-width': 1.5, 'stroke-dasharray': '5 4', opacity: 0.7, 'data-past': field }));
    }
    if (firstSeen < 0) continue;
    let d = '';
    hist.slice(firstSeen).forEach((p, i) => {
      const [px, py] = pt(p);
      d += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
    });
    d += `H${x(t1)}`;
    svgEl.append(s('path', { d, fill: 'none', stroke: color, 'stroke-width': field === 'inProgress' ? 1.5 : 2.5,
      'stroke-dasharray': field === 'inProgress' ? '4 3' : 'none', 'data-series': field }));
  }
  const fmt = (t) => new Date(t).toISOString().substring(11, 19) + 'Z';
  svgEl.append(s('text', { x: L, y: H - 10, 'font-size': 11, fill: '#6b7585', text: fmt(t0) }));
  svgEl.append(s('text', { x: W - R, y: H - 10, 'text-anchor': 'end', 'font-size': 11, fill: '#6b7585',
    text: v.completionTime ? fmt(t1) + ' (finished)' : fmt(t1) + ' (now)' }));
  const legend = h('div', { class: 'legend' },
    series.map(([field, color]) => {
      const i = h('i'); i.style.background = color;
      return h('span', {}, i, { updated: 'updated', failed: 'failed', inProgress: 'in progress' }[field]);
    }),
    h('span', { text: 'dashed: from the status\' start and batch completion times; solid: every change this dashboard saw' }));
  return h('div', { class: 'chart' }, svgEl, legend);
}

function stepsTable(v) {
  return h('table', { class: 'stepsTable', id: 'steps' },
    h('thead', {}, h('tr', {}, ['#', 'Step', '', 'Where', 'Started', 'Finished'].map((t) => h('th', { text: t })))),
    h('tbody', {}, v.steps.map((st) => {
      const b = st.batch;
      return h('tr', { class: st.state },
        h('td', { text: (st.state === 'current' ? '▶ ' : '') + st.index }),
        h('td', { class: 'label mono', text: st.label }),
        h('td', { class: 'barcell' }, st.kind === 'batch' ? (b ? bar(b.size, b.updated, b.failed, b.inProgress, true) : bar(1, 0, 0, 0, true)) : null),
        h('td', { text: st.detail }),
        h('td', { class: 'muted', text: b && b.startTime ? ago(b.startTime) : '' }),
        h('td', { class: 'muted', text: b && b.completionTime ? ago(b.completionTime) : '' }));
    })));
}

function stationsSection(v) {
  const sec = h('section', { id: 'stations' }, h('h2', { text: 'Stations' }));
  if (state.stationsError) {
    sec.append(h('div', { class: 'flash error', id: 'stations-error', text: state.stationsError }));
    if (!state.stations) return sec;
  }
  if (!state.stations) {
    sec.append(h('p', { class: 'muted', text: 'Reading the stations\' twins…' }));
    return sec;
  }
  const all = state.stations;
  const counts = {};
  const tagValues = {};
  for (const st of all) {
    counts[st.outcome] = (counts[st.outcome] || 0) + 1;
    for (const [k, val] of Object.entries(st.tags || {})) (tagValues[k] = tagValues[k] || new Set()).add(val);
  }
  const f = state.filter;
  const filters = h('div', { class: 'filters' },
    h('button', { class: f.outcome === '' ? 'on' : '', 'data-outcome': '', text: `All ${all.length}`,
      onclick: () => { f.outcome = ''; render(); } }),
    outcomes.filter((o) => counts[o]).map((o) => h('button', { class: f.outcome === o ? 'on' : '', 'data-outcome': o,
      text: `${o} ${counts[o]}`, onclick: () => { f.outcome = o; render(); } })),
    Object.keys(tagValues).sort().map((k) => h('label', {}, k + ' ',
      h('select', { 'data-tag': k, onchange: (e) => { f.tags[k] = e.target.value; render(); } },
        h('option', { value: '', text: 'any' }),
        [...tagValues[k]].sort().map((val) => h('option', { value: val, text: val, selected: f.tags[k] === val }))))));
  sec.append(filters);
  const shown = all.filter((st) => (!f.outcome || st.outcome === f.outcome) &&
    Object.entries(f.tags).every(([k, val]) => !val || (st.tags || {})[k] === val));
  const tagKeys = Object.keys(tagValues).sort();
  const table = h('table', { id: 'stations-table' },
    h('thead', {}, h('tr', {}, ['Device id', 'Batch', 'Outcome', 'Reason', ...tagKeys, 'Package', 'Updates served', 'Last seen', 'Message'].map((t) => h('th', { text: t })))),
    h('tbody', {}, shown.slice(0, maxStationRows).map((st) => h('tr', { 'data-station': st.id, 'data-outcome': st.outcome },
      h('td', { class: 'mono', text: st.id }),
      h('td', { class: 'num', text: st.batch || '-' }),
      h('td', {}, badge(st.outcome)),
      h('td', { text: st.reason || '' }),
      tagKeys.map((k) => h('td', { text: (st.tags || {})[k] || '' })),
      h('td', { class: 'mono', text: st.package || '-' }),
      h('td', { class: 'num', text: st.updatesServed }),
      h('td', { class: 'muted', text: st.lastSeen ? ago(st.lastSeen) : 'never' }),
      h('td', { class: 'muted', text: st.message || '' })))));
  sec.append(h('p', { class: 'muted', id: 'stations-count',
    text: `${shown.length} of ${all.length} stations shown` + (shown.length > maxStationRows ? ` (the first ${maxStationRows}: narrow them with the filters)` : '') }));
  sec.append(table);
  return sec;
}

function renderRollout() {
  const v = state.rollouts.get(page.ns + '/' + page.name);
  const back = h('p', {}, h('a', { href: '/', text: '← all rollouts' }));
  if (!v) {
    return h('div', {}, back, h('div', { class: 'empty', text: state.loaded ? `FirmwareRollout ${page.ns}/${page.name} does not exist (or was deleted).` : 'Loading…' }));
  }
  const bad = v.stalled || ['Halted', 'Aborted', 'Aborting'].includes(v.phase);
  const root = h('div', {}, back,
    h('h1', {}, h('span', { text: v.name }), badge(v.phase), v.paused && v.phase !== 'Paused' ? h('span', { class: 'muted', text: '(pausing)' }) : null),
    h('p', { class: 'meta' }, `namespace ${v.namespace} · package `, h('span', { class: 'mono', text: v.package }),
      v.selector ? ` · stations ${v.selector}` : '', v.maxFailures ? ` · maxFailures ${v.maxFailures}` : '',
      v.startTime ? ` · started ${ago(v.startTime)}` : '', v.completionTime ? ` · finished ${ago(v.completionTime)}` : ''),
    actionButtons(v), flashFor(v.namespace + '/' + v.name),
    v.message ? h('div', { class: 'message' + (bad ? ' bad' : ''), id: 'ready-message', text: v.message }) : null,
    h('div', { class: 'summary', id: 'summary' },
      [['', 'targets', v.targets], ['u', 'updated', v.updated], ['f', 'failed', v.failed],
        ['p', 'in progress' + (v.baking ? ` (${v.baking} baking)` : ''), v.inProgress], ['', 'pending', v.pending], ['', 'skipped', v.skipped]]
        .map(([cls, label, n]) => h('div', { class: 'box ' + cls, 'data-count': label.split(' ')[0] }, h('b', { text: n }), label))),
    h('div', { class: 'progress' }, bar(v.targets, v.updated, v.failed, v.inProgress, true), h('span', { class: 'mono progress-text', text: v.progress })),
    h('h2', { text: 'Steps' }), stepsTable(v),
    h('h2', { text: 'Progress over time' }), chart(v),
    h('div', { class: 'twocol' },
      h('section', {}, h('h2', { text: 'Latest failures' }),
        v.failures.length ? h('table', { id: 'failures' },
          h('thead', {}, h('tr', {}, ['Device id', 'Reason', 'When', 'Message'].map((t) => h('th', { text: t })))),
          h('tbody', {}, v.failures.map((fl) => h('tr', {},
            h('td', { class: 'mono', text: fl.deviceId }), h('td', {}, badge('Failed'), ' ', fl.reason),
            h('td', { class: 'muted', text: ago(fl.time) }), h('td', { text: fl.message || '' })))))
          : h('p', { class: 'muted', text: 'No station failed.' })),
      h('section', {}, h('h2', { text: 'Conditions' }),
        h('table', { id: 'conditions' },
          h('thead', {}, h('tr', {}, ['Type', 'Status', 'Reason', 'Since', 'Message'].map((t) => h('th', { text: t })))),
          h('tbody', {}, v.conditions.map((c) => h('tr', {},
            h('td', { text: c.type }), h('td', { text: c.status }), h('td', { text: c.reason }),
            h('td', { class: 'muted', text: ago(c.lastTransitionTime) }), h('td', { text: c.message }))))))),
    stationsSection(v));
  return root;
}

let scheduled = false;
function render() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    const app = document.getElementById('app');
    const y = window.scrollY;
    app.replaceChildren(page.kind === 'rollout' ? renderRollout() : renderOverview());
    window.scrollTo(0, y);
    document.title = page.kind === 'rollout' ? `${page.name} · stationfleet` : 'stationfleet rollouts';
  });
}

// Stations are read from the twins when the page opens and again when the
// rollout changes: at most every 3 s, and never more than a fifth of the
// time (a fleet of thousands takes a while to query).
let stationsTimer = null;
let stationsTook = 0;
function loadStationsSoon() {
  if (page.kind !== 'rollout' || stationsTimer) return;
  const wait = Math.max(0, Math.max(3000, 5 * stationsTook) - (Date.now() - state.stationsAt));
  stationsTimer = setTimeout(async () => {
    const started = Date.now();
    try {
      const res = await fetch(`/api/rollouts/${encodeURIComponent(page.ns)}/${encodeURIComponent(page.name)}/stations`);
      const body = await res.json();
      if (res.ok) { state.stations = body.stations; state.stationsError = ''; } else { state.stationsError = 'Station outcomes unavailable: ' + body.error; }
    } catch (e) {
      state.stationsError = 'Station outcomes unavailable: ' + e;
    }
    stationsTook = Date.now() - started;
    state.stationsAt = Date.now();
    stationsTimer = null;
    render();
  }, wait);
}

function setLive(ok, text) {
  const el = document.getElementById('live');
  el.className = 'live ' + (ok ? 'ok' : 'connecting');
  el.textContent = text;
}

function setWatch(w) {
  const el = document.getElementById('watch-error');
  el.hidden = !w.error;
  el.textContent = w.error ? `The watch on the rollouts fails (since ${ago(w.since)}), so the page may be out of date: ${w.error}` : '';
}

function connect() {
  const es = new EventSource('/api/events' + (page.kind === 'rollout' ? '?rollout=' + encodeURIComponent(page.ns + '/' + page.name) : ''));
  es.onopen = () => setLive(true, 'live');
  es.onerror = () => setLive(false, 'reconnecting…');
  es.addEventListener('snapshot', (e) => {
    const snap = JSON.parse(e.data);
    state.offset = new Date(snap.now).getTime() - Date.now();
    state.rollouts = new Map(snap.rollouts.map((v) => [v.namespace + '/' + v.name, v]));
    state.loaded = true;
    setWatch(snap.watch);
    render();
    loadStationsSoon();
  });
  es.addEventListener('rollout', (e) => {
    const v = JSON.parse(e.data);
    const key = v.namespace + '/' + v.name;
    state.rollouts.set(key, v);
    render();
    if (key === page.ns + '/' + page.name) loadStationsSoon();
  });
  es.addEventListener('deleted', (e) => {
    const d = JSON.parse(e.data);
    state.rollouts.delete(d.namespace + '/' + d.name);
    render();
  });
  es.addEventListener('status', (e) => setWatch(JSON.parse(e.data)));
}

connect();
// Ages ("3m ago") and the chart's "now" move without events.
setInterval(render, 10000);
