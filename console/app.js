// The console's shell: sign-in, banners, navigation between pages by the URL hash.
import { api, h, setCsrf, showError } from './api.js';
import { overview, models, settings } from './pages.js';
import { wizard } from './wizard.js';

const page = document.getElementById('page');
const nav = document.getElementById('nav');
const signin = document.getElementById('signin');
const banners = document.getElementById('banners');
let session = null, leave = () => {};

function banner(kind, text) {
  banners.append(h('p', { class: `banner ${kind}` }, text));
}

async function route() {
  leave();
  const name = (location.hash.replace(/^#\//, '') || 'overview').split('?')[0];
  for (const a of nav.querySelectorAll('a')) a.setAttribute('aria-current', a.getAttribute('href') === `#/${name}` ? 'page' : 'false');
  const pages = { overview, models, settings, wizard: (el) => wizard(el, () => { location.hash = '#/overview'; }) };
  const show = pages[name] || overview;
  // A fresh element per visit: a page's late answers land in a detached one.
  const el = h('div', {});
  page.replaceChildren(el);
  leave = show(el, session) || (() => {});
  document.getElementById('main').focus();
}

async function start() {
  try {
    session = await api('GET', '/ui/api/session');
  } catch (e) {
    banner('bad', e.message);
    return;
  }
  banners.replaceChildren();
  if (!session.admin_api) {
    banner('bad', 'The admin API is off: set the admin secret variable ([auth] admin_secret_env, default SWITCHYARD_ADMIN_SECRET) and restart Switchyard to use this console.');
  }
  if (!session.api_keys_required) {
    banner('warn', 'API keys are off ([auth] enabled = false): anyone who can reach the proxy listener can use every model.');
  }
  if (!session.signed_in) {
    nav.hidden = true;
    page.replaceChildren();
    signin.hidden = false;
    document.getElementById('secret').focus();
    return;
  }
  setCsrf(session.csrf);
  signin.hidden = true;
  nav.hidden = false;
  if (!location.hash) {
    try {
      const w = await api('GET', '/admin/ui/wizard');
      location.hash = w.completed ? '#/overview' : '#/wizard';
    } catch { location.hash = '#/overview'; }
  }
  route();
}

document.getElementById('signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = document.getElementById('signin-error');
  err.textContent = '';
  const input = document.getElementById('secret');
  try {
    await api('POST', '/ui/api/session', { secret: input.value });
    input.value = '';
    start();
  } catch (e) {
    err.textContent = e.status === 401 ? 'That is not the admin secret.' : e.message;
    input.select();
  }
});

document.getElementById('signout').addEventListener('click', async () => {
  try { await api('DELETE', '/ui/api/session'); } catch (e) { banner('bad', e.message); }
  setCsrf(null);
  leave();
  location.hash = '';
  start();
});

window.addEventListener('hashchange', () => { if (session && session.signed_in) route(); });
start();
