// The running-session picker shared by the logs, usage and playground views. The choice is
// kept in the URL (#/logs?session=ID), so a link from the apps page opens the right one.

import * as api from './api.js';
import { h, fill } from './dom.js';

/** { element, load() }: `load` lists the running sessions and reports the chosen one. */
export function sessionPicker(params, view, onChange) {
  let sessions = [];
  const keep = (id) => history.replaceState(null, '', `#/${view}?session=${encodeURIComponent(id)}`);
  const select = h('select#session', {
    onchange() {
      keep(select.value);
      onChange(sessions.find((s) => s.id === select.value) || null);
    },
  });
  async function load() {
    sessions = await api.call('list_running');
    fill(select, sessions.length
      ? sessions.map((s) => h('option', { value: s.id }, `${s.app_id} · ${s.id}`))
      : h('option', { value: '' }, 'no running session'));
    const chosen = sessions.find((s) => s.id === params.get('session')) || sessions[0] || null;
    if (chosen) {
      select.value = chosen.id;
      keep(chosen.id);
    }
    onChange(chosen);
    return chosen;
  }
  return { element: h('label.picker', 'Session ', select), load };
}
