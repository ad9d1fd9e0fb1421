// The console's shell: sign-in, the navigation, and which view fills the page (from the URL's
// hash, so every view has a link: #/logs?session=ID).

import * as api from './api.js';
import { h, fill, notice } from './dom.js';
import apps from './apps.js';
import install from './install.js';
import keys from './keys.js';
import logs from './logs.js';
import usage from './usage.js';
import playground from './playground.js';

const VIEWS = { apps, install, logs, usage, keys, playground };

let leave = null; // the current view's cleanup (timers, streams)

function current() {
  const [path, query] = (location.hash.slice(1) || '/apps').split('?');
  const name = path.replace(/^\/+/, '') || 'apps';
  return { name: VIEWS[name] ? name : 'apps', params: new URLSearchParams(query || '') };
}

/** Draws the current view; `reason` (text) says why the user was signed out, if so. */
function render(reason) {
  if (leave) leave();
  leave = null;
  const main = document.getElementById('main');
  const creds = api.credentials();
  document.getElementById('nav').hidden = !creds;
  document.getElementById('who').hidden = !creds;
  if (!creds) {
    signIn(main, typeof reason === 'string' ? reason : null);
    return;
  }
  document.getElementById('who-workspace').textContent = creds.workspace;
  const { name, params } = current();
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.view === name);
  }
  fill(main);
  leave = VIEWS[name](main, params) || null;
}

function signIn(main, reason) {
  const token = h('input#token', { type: 'password', autocomplete: 'off', placeholder: 'eyJ0eXAiOiJKV1Qi…', required: true });
  const workspace = h('input#workspace', { type: 'text', placeholder: 'from the token', autocomplete: 'off' });
  const status = h('div.status');
  const button = h('button#sign-in.primary', { type: 'submit' }, 'Sign in');
  const form = h('form.card.sign-in', {
    async onsubmit(event) {
      event.preventDefault();
      const t = token.value.trim();
      const ws = workspace.value.trim() || api.workspaceOf(t);
      if (!ws) {
        notice(status, 'error', 'This token names no workspace: enter one.');
        return;
      }
      button.disabled = true;
      notice(status, 'info', 'Signing in…');
      try {
        // Any controller call checks the token against the workspace.
        await api.call('list_apps', {}, { token: t, workspace: ws });
        api.remember(t, ws);
        location.hash = '#/apps';
        render();
      } catch (e) {
        notice(status, 'error', `Sign-in failed: ${e.message}`);
      } finally {
        button.disabled = false;
      }
    },
  },
    h('h1', 'Sign in'),
    h('p.hint', 'Paste a token (', h('code', 'ferrolite token --workspace NAME'), ' prints one; ', h('code', 'ferrolite serve'), ' prints one for the demo). It is kept in this tab only.'),
    h('label', 'Token', token),
    h('label', 'Workspace', workspace),
    button,
    status,
  );
  fill(main, form);
  if (reason) notice(status, 'error', `Signed out: ${reason}`);
  token.focus();
}

document.getElementById('sign-out').addEventListener('click', () => {
  api.forget();
  location.hash = '';
  render();
});
window.addEventListener('hashchange', render);
window.addEventListener('ferrolite:signed-out', (event) => {
  api.forget();
  render(event.detail);
});
render();
