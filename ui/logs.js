// A session's log, following new lines as they come: `get_logs` is polled from the offset
// already shown, so each poll brings only lines written since.

import * as api from './api.js';
import { h, fill, notice } from './dom.js';
import { sessionPicker } from './sessions.js';

const POLL_MS = 1000;
/** Lines fetched per poll; a backlog larger than this arrives over a few polls. */
const PAGE = 500;

export default function logs(main, params) {
  const status = h('div.status');
  const lines = h('ol#log-lines.log-view', { 'aria-live': 'polite' });
  const follow = h('input#follow', { type: 'checkbox', checked: true });
  const errorsOnly = h('input#errors-only', { type: 'checkbox', onchange: () => restart() });
  const counter = h('span.muted#log-count');
  let session = null;
  let offset = 0;
  let timer = null;
  let stopped = false;

  const picker = sessionPicker(params, 'logs', (s) => {
    session = s;
    restart();
  });
  fill(main,
    h('section.view',
      h('div.head', h('h1', 'Logs'), picker.element,
        h('label.check', errorsOnly, ' errors only'),
        h('label.check', follow, ' follow'),
        counter),
      status,
      lines,
    ),
  );

  function restart() {
    clearTimeout(timer);
    offset = 0;
    fill(lines);
    notice(status);
    if (session) poll();
    else notice(status, 'info', 'No running session: start an app to see its log.');
  }

  async function poll() {
    const polled = session;
    try {
      const kwargs = { session_id: polled.id, offset, limit: PAGE };
      if (errorsOnly.checked) kwargs.type = 'error';
      const page = await api.call('get_logs', kwargs);
      if (stopped || polled !== session) return;
      const atBottom = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 40;
      lines.append(...page.items.map((item) => h(`li.${item.type}`, item.content)));
      offset += page.items.length;
      counter.textContent = `${offset} line${offset === 1 ? '' : 's'}`;
      if (follow.checked && (atBottom || page.items.length)) lines.scrollTop = lines.scrollHeight;
    } catch (e) {
      if (stopped || polled !== session) return;
      notice(status, 'error', e.message);
      if (e.status === 404) return; // the session ended: nothing more will come
    }
    timer = setTimeout(poll, POLL_MS);
  }

  picker.load().catch((e) => notice(status, 'error', e.message));
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
