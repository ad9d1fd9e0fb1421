// The workspace's installed apps and running sessions, with start, stop and uninstall.

import * as api from './api.js';
import { h, fill, notice, formatTime } from './dom.js';

/** How often the lists refresh, for changes made elsewhere (CLI, another tab). */
const REFRESH_MS = 5000;

export default function apps(main) {
  const status = h('div.status');
  const installedBox = h('div#installed');
  const runningBox = h('div#running');
  fill(main,
    h('section.view',
      h('div.head', h('h1', 'Apps'), h('a.button', { href: '#/install' }, 'Install an app')),
      status,
      h('h2', 'Installed'), installedBox,
      h('h2', 'Running sessions'), runningBox,
    ),
  );

  let shown = '';
  async function refresh(force = false) {
    try {
      const [installed, running] = await Promise.all([api.call('list_apps'), api.call('list_running')]);
      const key = JSON.stringify([installed, running]);
      // Redraw only on change, so a periodic refresh never resets a half-done confirmation.
      if (!force && key === shown) return;
      shown = key;
      fill(installedBox, installedTable(installed, running));
      fill(runningBox, runningTable(running));
    } catch (e) {
      notice(status, 'error', e.message);
    }
  }

  /** Runs a controller call from a button, reporting its outcome. */
  async function act(button, fn, kwargs, done) {
    button.disabled = true;
    try {
      const result = await api.call(fn, kwargs);
      notice(status, 'ok', done(result));
    } catch (e) {
      notice(status, 'error', `${fn} failed: ${e.message}`);
    }
    await refresh(true);
  }

  function installedTable(installed, running) {
    if (!installed.length) {
      return h('p.empty', 'No app installed in this workspace. ', h('a', { href: '#/install' }, 'Install one.'));
    }
    return h('table.list',
      h('thead', h('tr', h('th', 'App'), h('th', 'Service id'), h('th', 'Models'), h('th', 'Installed'), h('th', 'State'), h('th'))),
      h('tbody', installed.map((app) => {
        const sessions = running.filter((s) => s.app_id === app.id).length;
        const start = h('button.primary', {
          type: 'button',
          onclick: () => act(start, 'start', { app_id: app.id }, (s) => `Started ${app.id}: session ${s.id} at ${s.url}`),
        }, 'Start');
        const uninstall = h('button.danger', {
          type: 'button',
          // Two clicks: the first asks, the second does (a browser dialog would block the page).
          onclick() {
            if (uninstall.dataset.armed) {
              act(uninstall, 'uninstall', { app_id: app.id }, () => `Uninstalled ${app.id}`);
            } else {
              uninstall.dataset.armed = 'yes';
              uninstall.textContent = 'Confirm uninstall';
            }
          },
        }, 'Uninstall');
        return h('tr', { dataset: { app: app.id } },
          h('td', h('b', app.id), h('div.sub', app.name), app.warnings?.length ? h('div.warn', app.warnings.join('; ')) : null),
          h('td', h('code', app.service_id || '(generated)')),
          h('td', app.models.join(', ')),
          h('td', formatTime(app.installed_at)),
          h('td', sessions ? h('span.badge.ok', 'running') : h('span.badge', 'stopped')),
          h('td.actions', start, uninstall),
        );
      })),
    );
  }

  function runningTable(running) {
    if (!running.length) return h('p.empty', 'No session is running. Start an installed app above.');
    return h('table.list',
      h('thead', h('tr', h('th', 'Session'), h('th', 'App'), h('th', 'Service'), h('th', 'Models'), h('th'))),
      h('tbody', running.map((s) => {
        const q = `?session=${encodeURIComponent(s.id)}`;
        const stop = h('button.danger', {
          type: 'button',
          onclick: () => act(stop, 'stop', { session_id: s.id }, () => `Stopped ${s.id}`),
        }, 'Stop');
        return h('tr', { dataset: { session: s.id } },
          h('td', h('code', s.id)),
          h('td', s.app_id),
          h('td', h('code', api.servicePath(s, ''))),
          h('td', s.models.join(', ')),
          h('td.actions',
            h('a.button', { href: `#/playground${q}` }, 'Playground'),
            h('a.button', { href: `#/logs${q}` }, 'Logs'),
            h('a.button', { href: `#/usage${q}` }, 'Usage'),
            stop,
          ),
        );
      })),
    );
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}
