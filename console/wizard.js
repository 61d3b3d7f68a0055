// The first-run wizard, the seed's six steps: Welcome, Hardware detection, Engine
// selection, Model selection, Download (with progress), Ready. Its state is kept by the
// gateway (`/admin/ui/wizard`), so it shows until completed and can be re-run.
import { api, h, showError } from './api.js';

const STEPS = ['Welcome', 'Hardware detection', 'Engine selection', 'Model selection', 'Download', 'Ready'];

export function wizard(el, done) {
  let step = 0, hw = null, rec = null, engine = null, model = '', timer = null;
  const msg = h('p', { class: 'error', role: 'alert', id: 'wizard-error' });

  async function go(n) {
    step = n;
    clearInterval(timer);
    try { await api('PUT', '/admin/ui/wizard', { completed: false, step }); } catch (e) { showError(msg, e); }
    draw();
  }

  function nav(next, label = 'Next', enabled = true) {
    return h('div', {},
      step > 0 ? h('button', { type: 'button', class: 'secondary', onclick: () => go(step - 1) }, 'Back') : null,
      h('button', { type: 'button', id: 'wizard-next', disabled: !enabled, onclick: next }, label));
  }

  function draw() {
    const head = [h('h1', { id: 'wizard-title' }, `Setup: ${STEPS[step]}`),
      h('ol', { class: 'steps', 'aria-label': 'Steps' }, STEPS.map((s, i) => h('li', { 'aria-current': i === step ? 'step' : null }, `${i + 1}. ${s}`))), msg];
    let body;
    if (step === 0) {
      body = [h('p', {}, 'Switchyard is the one address your clients use for every model: local ones it runs for you, and cloud providers as fallback.'),
        h('p', {}, 'This setup looks at the machine, picks an engine and a model, downloads it and starts it.'), nav(() => go(1), 'Start')];
    } else if (step === 1) {
      body = [h('p', { id: 'hw' }, 'Detecting…')];
      api('POST', '/admin/hardware/detect').then(x => {
        hw = x;
        const gpus = x.gpus.length ? x.gpus.map(g => `${g.vendor.toUpperCase()} ${g.name}, ${g.vram_mib ?? '?'} MiB`).join('; ') : 'no GPU';
        document.getElementById('hw').replaceChildren(h('ul', {}, h('li', {}, `GPUs: ${gpus}`),
          h('li', {}, `CPU cores: ${x.cpu_cores ?? 'unknown'}`), h('li', {}, `RAM: ${x.ram_mib ? Math.round(x.ram_mib / 1024) + ' GiB' : 'unknown'}`),
          h('li', {}, `Free disk: ${x.disk_free_mib ? Math.round(x.disk_free_mib / 1024) + ' GiB' : 'unknown'}`)));
      }).catch(e => showError(msg, e));
      body.push(nav(() => go(2)));
    } else if (step === 2) {
      body = [h('p', { id: 'rec' }, 'Working out a recommendation…'), h('div', { id: 'engines' })];
      api('GET', '/admin/inference/recommendation').then(r => {
        rec = r;
        engine = engine || r.backend || 'cloud';
        document.getElementById('rec').textContent = `Recommended: ${r.backend || 'cloud providers only'} — ${r.reason}`;
        document.getElementById('engines').replaceChildren(h('fieldset', {}, h('legend', {}, 'Engine'),
          [['vllm', 'vLLM (NVIDIA or AMD GPU)'], ['sglang', 'SGLang (NVIDIA GPU)'], ['ollama', 'Ollama (small GPUs, CPU)'], ['cloud', 'No local engine: cloud providers only']].map(([v, l]) =>
            h('label', {}, h('input', { type: 'radio', name: 'engine', value: v, checked: v === engine, onchange: () => { engine = v; } }), ' ', l))));
      }).catch(e => showError(msg, e));
      body.push(nav(() => go(engine === 'cloud' ? 5 : 3)));
    } else if (step === 3) {
      const input = h('input', { id: 'wizard-model', value: model, autocomplete: 'off', oninput: (e) => { model = e.target.value.trim(); } });
      const list = h('div', { id: 'wizard-models' }, 'Loading the recommended models…');
      api('GET', `/admin/inference/models/recommended?backend=${engine}`).then(r => {
        const all = Object.values(r.categories).flat();
        if (!model && rec && rec.model && rec.backend === engine) { model = rec.model.id; input.value = model; }
        list.replaceChildren(all.length ? h('ul', {}, all.map(m => h('li', {}, h('label', {}, h('input', { type: 'radio', name: 'wm', value: m.id, checked: m.id === model,
          onchange: () => { model = m.id; input.value = m.id; } }), ` ${m.id} (${m.category}, ${m.vram_gb} GB)`)))) : h('p', { class: 'muted' }, 'No curated model fits; enter one.'));
      }).catch(e => showError(msg, e));
      body = [list, h('label', { for: 'wizard-model' }, 'Model'), input,
        nav(async () => {
          if (!model) { msg.textContent = 'Choose or enter a model.'; return; }
          try { await api('POST', '/admin/inference/select', { backend: engine, model }); go(4); } catch (e) { showError(msg, e); }
        }, 'Download and start')];
    } else if (step === 4) {
      const box = h('div', { id: 'wizard-progress', 'aria-live': 'polite' }, 'Starting…');
      const poll = async () => {
        try {
          const s = await api('GET', '/admin/inference');
          const parts = [h('p', {}, `State: ${s.state} — ${s.reason}`)];
          if (s.pull && s.pull.total) parts.push(h('progress', { max: s.pull.total, value: s.pull.completed }));
          if (s.last_error) parts.push(h('p', { class: 'error' }, s.last_error));
          box.replaceChildren(...parts);
          if (s.state === 'ready') { clearInterval(timer); go(5); }
        } catch (e) { showError(msg, e); }
      };
      timer = setInterval(poll, 500);
      poll();
      body = [box, nav(() => go(5), 'Skip waiting')];
    } else {
      body = [h('p', { id: 'wizard-done' }, 'Ready. Point clients at the proxy listener (for example http://localhost:8080/v1) with the model name.'),
        h('button', { type: 'button', id: 'wizard-finish', onclick: async () => {
          try { await api('PUT', '/admin/ui/wizard', { completed: true, step: 5 }); done(); } catch (e) { showError(msg, e); }
        } }, 'Finish')];
    }
    el.replaceChildren(h('div', { class: 'card' }, ...head, ...body));
    const t = document.getElementById('wizard-title');
    if (t) t.focus && t.setAttribute('tabindex', '-1');
  }

  api('GET', '/admin/ui/wizard').then(w => { step = w.completed ? 0 : (w.step || 0); draw(); }).catch(e => { showError(msg, e); draw(); });
  return () => clearInterval(timer);
}
