// The console's pages: Overview, Models, Settings. Each renders into `el` and returns a
// function that stops its refresh timer when the page is left.
import { api, h, since, showError } from './api.js';
import { lineChart } from './charts.js';

const STATES_BUSY = ['pulling', 'starting', 'restarting', 'draining', 'stopping'];

function stateBadge(state) {
  return h('span', { class: `state ${state}`, 'data-state': state }, state);
}

function statusCard(s) {
  const pull = s.pull && s.pull.total ? h('div', {},
    h('label', { for: 'pull-progress' }, `Download: ${s.pull.status || ''}`),
    h('progress', { id: 'pull-progress', max: s.pull.total, value: s.pull.completed },
      `${Math.round(100 * s.pull.completed / s.pull.total)} %`)) : (s.pull ? h('p', { class: 'muted' }, s.pull.status) : null);
  return h('div', { class: 'card', id: 'status-card' },
    h('h2', {}, 'Local backend'),
    h('p', {}, h('span', { class: 'big', id: 'backend-name' }, s.backend === 'none' ? 'none' : `${s.backend} · ${s.model || ''}`), ' ', stateBadge(s.state)),
    h('p', { class: 'muted', id: 'status-reason' }, `${s.reason || ''}${s.since_ms ? ' · since ' + since(s.since_ms) : ''}`),
    s.last_error ? h('p', { class: 'error', role: 'alert' }, s.last_error) : null,
    pull,
    h('p', { class: 'muted' }, `restarts ${s.restarts} · last health ${s.last_health || '—'}${s.holder && s.holder !== s.replica ? ' · controller on ' + s.holder : ''}`),
    !s.enabled ? h('p', { class: 'muted' }, 'The controller is off ([control] enabled = false): Switchyard routes to a backend run elsewhere.') : null);
}

export function overview(el) {
  let timer = null;
  async function draw() {
    try {
      const [s, inflight, hist] = await Promise.all([
        api('GET', '/admin/inference'), api('GET', '/health/inflight'), api('GET', '/admin/history')]);
      const pts = hist.points;
      el.replaceChildren(
        h('h1', {}, 'Overview'),
        h('div', { class: 'grid' },
          statusCard(s),
          h('div', { class: 'card' }, h('h2', {}, 'In flight'),
            h('p', { class: 'big', id: 'inflight' }, String(inflight.total)),
            h('p', { class: 'muted' }, `local ${inflight.local} on this replica, ${inflight.cluster.local} in the cluster`))),
        h('div', { class: 'grid', id: 'charts' },
          lineChart(pts, 'rps', { label: 'Requests/s', digits: 1 }),
          lineChart(pts, 'p50_ms', { label: 'Latency p50', unit: ' ms', digits: 0 }),
          lineChart(pts, 'p99_ms', { label: 'Latency p99', unit: ' ms', digits: 0 }),
          lineChart(pts, 'ttft_p50_ms', { label: 'Time to first token p50', unit: ' ms', digits: 0 }),
          lineChart(pts, 'tokens_per_s', { label: 'Tokens/s', digits: 0 }),
          lineChart(pts, 'error_rate', { label: 'Error rate', unit: ' %', scale: 100, digits: 1 }),
          lineChart(pts, 'cache_hit_rate', { label: 'Cache hit rate', unit: ' %', scale: 100, digits: 0 })));
    } catch (e) {
      el.replaceChildren(h('h1', {}, 'Overview'), h('p', { class: 'error', role: 'alert' }, e.message));
    }
  }
  draw();
  timer = setInterval(draw, 2000);
  return () => clearInterval(timer);
}

function fitsMark(vram, budget) {
  if (vram === null || vram === undefined) return h('span', { class: 'muted' }, 'size unknown');
  if (!budget) return h('span', { class: 'muted' }, `${vram} GB (no GPU found)`);
  return vram <= budget ? h('span', { class: 'fits' }, `fits (${vram} GB)`) : h('span', { class: 'nofit' }, `does not fit (${vram} GB)`);
}

export function models(el) {
  let timer = null;
  const msg = h('p', { class: 'error', role: 'alert', id: 'models-error' });
  const statusBox = h('div', { id: 'status-box' });
  const gpuBox = h('div', { class: 'grid', id: 'gpu-cards' });
  const recBox = h('div', { id: 'recommendation' });
  const lists = h('div', { class: 'grid', id: 'model-lists' });
  let budget = 0;

  async function act(method, path, body) {
    msg.textContent = '';
    try { await api(method, path, body); await refresh(); } catch (e) { showError(msg, e); }
  }

  const backendSel = h('select', { id: 'select-backend' }, ['vllm', 'sglang', 'ollama'].map(b => h('option', { value: b }, b)));
  const modelIn = h('input', { id: 'select-model', placeholder: 'Qwen/Qwen2.5-7B-Instruct', autocomplete: 'off' });
  const switchIn = h('input', { id: 'switch-model', placeholder: 'another model', autocomplete: 'off' });
  const pullIn = h('input', { id: 'ollama-model', placeholder: 'llama3.2', autocomplete: 'off' });
  const controls = h('div', { class: 'card' },
    h('h2', {}, 'Run a backend'),
    h('div', { class: 'row' },
      h('div', {}, h('label', { for: 'select-backend' }, 'Backend'), backendSel),
      h('div', {}, h('label', { for: 'select-model' }, 'Model'), modelIn)),
    h('button', { type: 'button', id: 'do-select', onclick: () => act('POST', '/admin/inference/select', { backend: backendSel.value, model: modelIn.value.trim() }) }, 'Select'),
    h('div', { class: 'row' }, h('div', {}, h('label', { for: 'switch-model' }, 'Switch the model'), switchIn)),
    h('button', { type: 'button', id: 'do-switch', onclick: () => act('POST', '/admin/inference/switch-model', { model: switchIn.value.trim() }) }, 'Switch model'),
    h('button', { type: 'button', class: 'secondary', id: 'do-stop', onclick: () => act('POST', '/admin/inference/stop') }, 'Stop'),
    h('button', { type: 'button', class: 'secondary', id: 'do-retry', onclick: () => act('POST', '/admin/inference/retry') }, 'Retry'),
    h('div', { class: 'row' }, h('div', {}, h('label', { for: 'ollama-model' }, 'Add an Ollama model'), pullIn)),
    h('button', { type: 'button', class: 'secondary', onclick: () => act('POST', '/admin/inference/ollama/pull', { model: pullIn.value.trim() }) }, 'Download'));

  const q = h('input', { id: 'search-q', type: 'search', placeholder: 'llama 3', autocomplete: 'off' });
  const qBackend = h('select', { id: 'search-backend' }, ['vllm', 'sglang', 'ollama'].map(b => h('option', { value: b }, b)));
  const results = h('div', { id: 'search-results' });
  const search = h('form', { class: 'card', onsubmit: async (ev) => {
      ev.preventDefault();
      results.replaceChildren(h('p', { class: 'muted' }, 'Searching…'));
      try {
        const r = await api('GET', `/admin/inference/models/search?q=${encodeURIComponent(q.value)}&backend=${qBackend.value}`);
        results.replaceChildren(h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Model'), h('th', {}, 'VRAM'), h('th', {}, 'Downloads'), h('th', {}, ''))),
          h('tbody', {}, r.data.map(m => h('tr', {}, h('td', {}, m.id), h('td', {}, fitsMark(m.vram_gb, budget)), h('td', {}, String(m.downloads ?? '')),
            h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: () => { backendSel.value = qBackend.value; modelIn.value = m.pull || m.id; modelIn.focus(); } }, 'Use')))))));
      } catch (e) { results.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message)); }
    } },
    h('h2', {}, 'Search models'),
    h('div', { class: 'row' }, h('div', {}, h('label', { for: 'search-q' }, 'Search the Hugging Face Hub'), q),
      h('div', {}, h('label', { for: 'search-backend' }, 'For'), qBackend)),
    h('button', { type: 'submit' }, 'Search'), results);

  async function refresh() {
    try {
      const s = await api('GET', '/admin/inference');
      statusBox.replaceChildren(statusCard(s));
      const busy = STATES_BUSY.includes(s.state);
      clearInterval(timer);
      timer = setInterval(refresh, busy ? 500 : 3000);
      const p = await api('GET', '/admin/providers');
      lists.replaceChildren(
        h('div', { class: 'card' }, h('h2', {}, 'Local models'),
          p.local && p.local.models.length ? h('ul', { id: 'local-models' }, p.local.models.map(m => h('li', {}, m,
            s.backend === 'ollama' ? h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove ${m}`, onclick: () => act('DELETE', `/admin/inference/ollama/models/${encodeURIComponent(m)}`) }, 'Remove') : null)))
            : h('p', { class: 'muted' }, 'No local model is served now.')),
        h('div', { class: 'card' }, h('h2', {}, 'Cloud models'),
          h('ul', {}, p.providers.filter(x => !x.disabled).map(x => h('li', {}, `${x.name}: `, x.models.length ? x.models.slice(0, 12).join(', ') : 'models as requested')))));
    } catch (e) { showError(msg, e); }
  }

  async function once() {
    try {
      const [rec, list] = await Promise.all([api('GET', '/admin/inference/recommendation'), api('GET', '/admin/inference/models/recommended')]);
      const vram = rec.hardware && rec.hardware.gpus && rec.hardware.gpus.length ? Math.max(...rec.hardware.gpus.map(g => g.vram_mib || 0)) : 0;
      budget = vram ? Math.round(vram / 1024 * 0.9 * 10) / 10 : 0;
      recBox.replaceChildren(h('div', { class: 'card banner info', id: 'rec-banner' },
        h('strong', {}, 'Recommended: '), rec.backend ? `${rec.backend}${rec.model ? ' with ' + rec.model.id : ''}` : 'cloud providers', ` — ${rec.reason}`,
        rec.backend && rec.model ? h('button', { type: 'button', class: 'secondary', onclick: () => { backendSel.value = rec.backend; modelIn.value = rec.model.id; modelIn.focus(); } }, 'Use this') : null));
      const cats = Object.entries(list.categories).map(([cat, ms]) => h('div', { class: 'card' }, h('h2', {}, `Recommended: ${cat}`),
        ms.length ? h('ul', {}, ms.map(m => h('li', {}, `${m.id} (${m.vram_gb} GB) `,
          h('button', { type: 'button', class: 'secondary', onclick: () => { backendSel.value = list.backend; modelIn.value = m.id; modelIn.focus(); } }, 'Use'))))
          : h('p', { class: 'muted' }, 'None fits this machine.')));
      recList.replaceChildren(...cats);
    } catch (e) { showError(msg, e); }
    try {
      const g = await api('GET', '/admin/hardware/gpu-stats');
      gpuBox.replaceChildren(...g.gpus.map(x => h('div', { class: 'card gpu' }, h('h2', {}, `GPU ${x.index}: ${x.name}`),
        h('p', {}, `Utilization ${x.utilization_pct ?? '—'} % · VRAM ${x.vram_used_mib ?? '—'} / ${x.vram_mib ?? '—'} MiB`),
        h('p', {}, `Temperature ${x.temperature_c ?? '—'} °C · Power ${x.power_w ?? '—'} W`))));
    } catch (e) {
      gpuBox.replaceChildren(h('p', { class: 'muted', id: 'no-gpu' }, e.status === 404 ? 'No GPU: ' + e.message : e.message));
    }
  }
  const recList = h('div', { class: 'grid', id: 'recommended' });
  el.replaceChildren(h('h1', {}, 'Models'), msg, recBox, statusBox, controls, gpuBox, lists, search, recList);
  refresh();
  once();
  return () => clearInterval(timer);
}

export function settings(el, session) {
  const msg = h('p', { class: 'error', role: 'alert', id: 'settings-error' });
  const keyOut = h('div', { id: 'new-key', 'aria-live': 'polite' });
  const keysBox = h('div', { id: 'keys' });
  const provBox = h('div', { id: 'providers' });
  const quotaBox = h('div', { id: 'quotas' });
  const modeBox = h('div', {});

  async function put(key, value) {
    msg.textContent = '';
    try {
      await api(value === '' ? 'DELETE' : 'PUT', `/admin/config/${key}`, value === '' ? undefined : value);
      await load();
    } catch (e) { showError(msg, e); }
  }

  const urlKind = h('select', { id: 'ext-kind' }, ['custom', 'vllm', 'sglang', 'ollama'].map(b => h('option', { value: b }, b)));
  const urlIn = h('input', { id: 'ext-url', placeholder: 'http://10.0.0.5:8000', autocomplete: 'off' });
  const authIn = h('input', { id: 'ext-auth', type: 'password', placeholder: 'Bearer … (optional)', autocomplete: 'off' });
  const external = h('div', { class: 'card' }, h('h2', {}, 'External backend'),
    h('p', { class: 'muted' }, 'Route to an inference server run elsewhere (any OpenAI-compatible URL).'),
    h('div', { class: 'row' },
      h('div', {}, h('label', { for: 'ext-kind' }, 'Kind'), urlKind),
      h('div', {}, h('label', { for: 'ext-url' }, 'URL (server root, without /v1)'), urlIn),
      h('div', {}, h('label', { for: 'ext-auth' }, 'Authorization'), authIn)),
    h('button', { type: 'button', onclick: async () => {
      msg.textContent = '';
      try {
        await api('PUT', '/admin/config/inference.url', urlIn.value.trim());
        await api('PUT', '/admin/config/inference.backend', urlKind.value);
        if (authIn.value) await api('PUT', '/admin/config/inference.auth', authIn.value);
        authIn.value = '';
        await load();
      } catch (e) { showError(msg, e); }
    } }, 'Use this backend'),
    h('button', { type: 'button', class: 'secondary', onclick: async () => {
      try { for (const k of ['inference.url', 'inference.backend', 'inference.auth']) await api('DELETE', `/admin/config/${k}`); await load(); } catch (e) { showError(msg, e); }
    } }, 'Back to the configured one'));

  const tenant = h('input', { id: 'key-tenant', autocomplete: 'off', required: true });
  const rpm = h('input', { id: 'key-rpm', type: 'number', min: 0, value: 0 });
  const tpm = h('input', { id: 'key-tpm', type: 'number', min: 0, value: 0 });
  const kmodels = h('input', { id: 'key-models', placeholder: 'all (or a comma list, globs allowed)', autocomplete: 'off' });
  const keyForm = h('form', { class: 'card', id: 'key-form', onsubmit: async (ev) => {
      ev.preventDefault(); msg.textContent = '';
      try {
        const k = await api('POST', '/admin/keys', { tenant: tenant.value.trim(), requests_per_minute: Number(rpm.value), tokens_per_minute: Number(tpm.value),
          models: kmodels.value.split(',').map(s => s.trim()).filter(Boolean) });
        keyOut.replaceChildren(h('p', {}, 'The new key, shown once — copy it now:'), h('p', { class: 'secret-once', id: 'key-value' }, k.key));
        tenant.value = '';
        await load();
      } catch (e) { showError(msg, e); }
    } },
    h('h2', {}, 'API keys'),
    h('div', { class: 'row' },
      h('div', {}, h('label', { for: 'key-tenant' }, 'Tenant'), tenant),
      h('div', {}, h('label', { for: 'key-rpm' }, 'Requests per minute (0: no limit)'), rpm),
      h('div', {}, h('label', { for: 'key-tpm' }, 'Tokens per minute (0: no limit)'), tpm),
      h('div', {}, h('label', { for: 'key-models' }, 'Models'), kmodels)),
    h('button', { type: 'submit', id: 'key-create' }, 'Create key'), keyOut, keysBox);

  async function load() {
    try {
      const [cfg, p, keys, quotas] = await Promise.all([api('GET', '/admin/config'), api('GET', '/admin/providers'), api('GET', '/admin/keys'), api('GET', '/admin/quotas')]);
      const strategy = cfg.effective['routing.strategy'];
      const modes = [['local-first', 'Hybrid: local first, cloud as fallback'], ['cloud-first', 'Cloud first, local as fallback'], ['local-only', 'Local only'], ['cloud-only', 'Cloud only']];
      modeBox.replaceChildren(h('fieldset', { class: 'card' }, h('legend', {}, h('h2', {}, 'Mode')),
        modes.map(([v, label]) => h('label', {}, h('input', { type: 'radio', name: 'mode', value: v, checked: v === strategy, onchange: () => put('routing.strategy', v) }), ' ', label)),
        h('p', { class: 'muted' }, cfg.stored['routing.strategy'] ? 'Set here (stored); ' : 'From the configuration file; ', `local backend: ${cfg.effective.local ? cfg.effective.local.kind + ' at ' + cfg.effective.local.url + ' (' + cfg.effective.local.state + ')' : 'none'}`)));
      provBox.replaceChildren(h('div', { class: 'card' }, h('h2', {}, 'Cloud providers'),
        p.providers.length ? h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Provider'), h('th', {}, 'Kind'), h('th', {}, 'Key'), h('th', {}, 'Status'))),
          h('tbody', {}, p.providers.map(x => h('tr', {}, h('td', {}, x.name), h('td', {}, x.kind),
            h('td', {}, x.key_present ? 'present' : (x.missing_key_env ? `missing (${x.missing_key_env})` : 'none needed')),
            h('td', {}, x.disabled ? `left out: ${x.disabled}` : 'serving')))))
          : h('p', { class: 'muted' }, 'No cloud provider: set OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY … or add [[providers]].')));
      keysBox.replaceChildren(h('table', { id: 'keys-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'Id'), h('th', {}, 'Tenant'), h('th', {}, 'Limits'), h('th', {}, 'Models'), h('th', {}, ''))),
        h('tbody', {}, keys.data.map(k => h('tr', { 'data-tenant': k.tenant }, h('td', {}, k.id), h('td', {}, k.tenant),
          h('td', {}, `${k.requests_per_minute || '∞'} req/min · ${k.tokens_per_minute || '∞'} tok/min`), h('td', {}, (k.models || []).join(', ') || 'all'),
          h('td', {}, k.source === 'api' ? h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke the key of ${k.tenant}`, onclick: async () => {
            try { await api('DELETE', `/admin/keys/${k.id}`); keyOut.replaceChildren(); await load(); } catch (e) { showError(msg, e); } } }, 'Revoke') : h('span', { class: 'muted' }, 'in the file')))))));
      const qs = Object.entries(quotas || {}).map(([provider, v]) => ({ provider, ...v }));
      quotaBox.replaceChildren(h('div', { class: 'card' }, h('h2', {}, 'Quotas today'),
        qs.length ? h('ul', {}, qs.map(x => h('li', {}, `${x.provider}: ${x.requests} / ${x.requests_per_day || '∞'} requests, ${x.tokens} / ${x.tokens_per_day || '∞'} tokens${x.exhausted ? ' — used up' : ''}`)))
          : h('p', { class: 'muted' }, 'No quota is configured.')));
    } catch (e) { showError(msg, e); }
  }
  el.replaceChildren(h('h1', {}, 'Settings'), msg, modeBox, external, provBox, keyForm, quotaBox,
    h('div', { class: 'card' }, h('h2', {}, 'First-run setup'), h('p', {}, 'Run the setup wizard again.'),
      h('button', { type: 'button', id: 'rerun-wizard', onclick: async () => { try { await api('PUT', '/admin/ui/wizard', { completed: false, step: 0 }); location.hash = '#/wizard'; } catch (e) { showError(msg, e); } } }, 'Run setup again')));
  load();
  return () => {};
}
