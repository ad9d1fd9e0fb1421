// The workspace's API keys: the list with each key's limits and standing, a form that creates
// one (its secret shown once, here), and revoke.

import * as api from './api.js';
import { h, fill, notice, formatTime, formatUsd } from './dom.js';

/** How often the list refreshes, for keys made elsewhere (CLI, another instance). */
const REFRESH_MS = 5000;

/** The form's fields: id, label, placeholder, how the value is sent. */
const FIELDS = [
  ['name', 'Name', 'ci-bot', (v) => v],
  ['user', 'User', 'ada@example.com', (v) => v],
  ['models', 'Models (comma-separated; empty: all)', 'gpt-4o, claude', (v) => v.split(',').map((m) => m.trim()).filter(Boolean)],
  ['max_budget', 'Budget (USD)', '10', Number],
  ['budget_duration', 'Budget period', '30d', (v) => v],
  ['rpm', 'Requests / minute', '60', Number],
  ['tpm', 'Tokens / minute', '100000', Number],
  ['max_parallel', 'Requests at once', '4', Number],
  ['expires_in', 'Expires in', '30d', (v) => v],
];

export default function keys(main) {
  const status = h('div.status');
  const listBox = h('div#key-list');
  const secretBox = h('div#new-key');
  const inputs = Object.fromEntries(FIELDS.map(([id, , placeholder]) => [id, h(`input#key-${id}`, { type: 'text', placeholder, autocomplete: 'off' })]));
  const create = h('button#create-key.primary', { type: 'submit' }, 'Create key');
  const form = h('form.card.key-form', {
    async onsubmit(event) {
      event.preventDefault();
      const kwargs = {};
      for (const [id, , , read] of FIELDS) {
        const value = inputs[id].value.trim();
        if (value) kwargs[id] = read(value);
      }
      create.disabled = true;
      try {
        const made = await api.call('create_key', kwargs);
        // Shown once: it is kept nowhere, this page included, once it is left.
        fill(secretBox, h('div.card.secret',
          h('p', 'The new key ', h('b', made.id), ' — copy it now, it is not shown again:'),
          h('code#new-key-secret', made.key),
        ));
        for (const input of Object.values(inputs)) input.value = '';
        notice(status, 'ok', `Created ${made.id}`);
      } catch (e) {
        notice(status, 'error', `create_key failed: ${e.message}`);
      } finally {
        create.disabled = false;
      }
      await refresh(true);
    },
  },
    h('h2', 'New key'),
    h('div.fields', FIELDS.map(([id, label]) => h('label', label, inputs[id]))),
    create,
  );
  fill(main, h('section.view', h('div.head', h('h1', 'API keys')), status, secretBox, h('h2', 'Keys'), listBox, form));

  let shown = '';
  async function refresh(force = false) {
    try {
      const list = await api.call('list_keys');
      const key = JSON.stringify(list);
      if (!force && key === shown) return;
      shown = key;
      fill(listBox, table(list));
    } catch (e) {
      notice(status, 'error', e.message);
    }
  }

  function limits(k) {
    const parts = [];
    if (k.max_budget != null) parts.push(`${formatUsd(k.max_budget)}${k.budget_duration ? ` / ${k.budget_duration}` : ''}`);
    if (k.rpm != null) parts.push(`${k.rpm} rpm`);
    if (k.tpm != null) parts.push(`${k.tpm} tpm`);
    if (k.max_parallel != null) parts.push(`${k.max_parallel} at once`);
    return parts.join(', ') || '—';
  }

  function table(list) {
    if (!list.length) return h('p.empty', 'No API key in this workspace. Create one below.');
    return h('table.list',
      h('thead', h('tr', h('th', 'Key'), h('th', 'Name'), h('th', 'User'), h('th', 'Models'), h('th', 'Limits'), h('th', 'Spent'), h('th', 'Created'), h('th', 'Status'), h('th'))),
      h('tbody', list.map((k) => {
        const revoke = h('button.danger', {
          type: 'button',
          async onclick() {
            if (!revoke.dataset.armed) {
              revoke.dataset.armed = 'yes';
              revoke.textContent = 'Confirm revoke';
              return;
            }
            revoke.disabled = true;
            try {
              await api.call('revoke_key', { key_id: k.id });
              notice(status, 'ok', `Revoked ${k.id}`);
            } catch (e) {
              notice(status, 'error', `revoke_key failed: ${e.message}`);
            }
            await refresh(true);
          },
        }, 'Revoke');
        return h('tr', { dataset: { key: k.id } },
          h('td', h('code', k.id), h('div.sub', k.key_hint)),
          h('td', k.name || '—'),
          h('td', k.user || '—'),
          h('td', k.models.length ? k.models.join(', ') : 'all'),
          h('td', limits(k)),
          h('td.spent', formatUsd(k.spend || 0)),
          h('td', formatTime(k.created_at)),
          h('td', h(`span.badge${k.status === 'active' ? '.ok' : ''}`, k.status)),
          h('td.actions', k.status === 'active' ? revoke : null),
        );
      })),
    );
  }

  refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}
