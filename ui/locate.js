// Where a validation error's JSON path sits in the editor's text, so the editor can mark its
// line and jump to it. JSON text is scanned once into pointer -> span; a path that does not
// exist in the text (a missing required property) falls back to its nearest ancestor.

/** The spans of every value in JSON `text`, by JSON pointer (as far as the text parses). */
export function spans(text) {
  const found = new Map();
  let i = 0;
  const space = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i])) i++;
  };
  const fail = () => {
    throw new SyntaxError(`at ${i}`);
  };
  function string() {
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail();
    i++;
    try {
      return JSON.parse(text.slice(start, i));
    } catch {
      return text.slice(start + 1, i - 1);
    }
  }
  function value(pointer, keyStart) {
    space();
    const span = { start: i, end: i, keyStart };
    found.set(pointer, span);
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      space();
      let index = 0;
      while (text[i] !== close) {
        if (c === '{') {
          space();
          if (text[i] !== '"') fail();
          const at = i;
          const key = string();
          space();
          if (text[i] !== ':') fail();
          i++;
          value(`${pointer}/${escape(key)}`, at);
        } else {
          value(`${pointer}/${index++}`);
        }
        space();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail();
        space();
      }
      i++;
    } else if (c === '"') {
      string();
    } else {
      while (i < text.length && !' \t\r\n,]}'.includes(text[i])) i++;
      if (i === span.start) fail();
    }
    span.end = i;
  }
  try {
    value('');
  } catch {
    // Keep what was found before the text stopped parsing.
  }
  return found;
}

function escape(key) {
  return String(key).replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * The text range an error concerns: { start, end, exact } where `exact` says the path itself
 * was found (not an ancestor). Parse errors that name "line L column C" point there.
 */
export function locate(text, pointer, message = '', found = spans(text)) {
  const at = /line (\d+),? column (\d+)/.exec(message);
  if (at) {
    const start = offsetOf(text, Number(at[1]), Number(at[2]));
    return { start, end: Math.min(text.length, start + 1), exact: true };
  }
  if (!/^\s*[[{]/.test(text)) return locateYaml(text, pointer || '');
  let path = pointer || '';
  for (;;) {
    const span = found.get(path);
    if (span) {
      const start = span.keyStart ?? span.start;
      const lineEnd = text.indexOf('\n', start);
      const end = Math.max(start + 1, Math.min(span.end, lineEnd < 0 ? text.length : lineEnd));
      return { start, end, exact: path === (pointer || '') };
    }
    if (!path) return null;
    path = path.slice(0, path.lastIndexOf('/'));
  }
}

function offsetOf(text, line, column) {
  let offset = 0;
  for (let n = 1; n < line; n++) {
    const next = text.indexOf('\n', offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return Math.min(text.length, offset + Math.max(0, column - 1));
}

/** The 1-based line of a text offset. */
export function lineOf(text, offset) {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text[i] === '\n') line++;
  return line;
}

/**
 * The same for block-style YAML (the shape manifests are written in): each path segment is
 * looked up one level below the previous one. Flow style and multi-line scalars are not
 * followed; then the nearest ancestor found is given.
 */
function locateYaml(text, pointer) {
  const lines = [];
  let offset = 0;
  for (const raw of text.split('\n')) {
    const trimmed = raw.trimStart();
    if (trimmed && !trimmed.startsWith('#')) {
      const indent = raw.length - trimmed.length;
      const item = /^-(\s|$)/.test(trimmed);
      // On an item line ("- key: value") the key starts after the dash.
      const keyAt = item ? raw.length - trimmed.slice(1).trimStart().length : indent;
      const key = /^(?:"([^"]*)"|'([^']*)'|([^:#'"][^:#]*?))\s*:(\s|$)/.exec(raw.slice(keyAt));
      lines.push({ offset, end: offset + raw.length, indent, item, keyAt, key: key && (key[1] ?? key[2] ?? key[3]) });
    }
    offset += raw.length + 1;
  }
  const segments = pointer.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  let [from, to] = [0, lines.length];
  let best = null;
  for (const [depth, segment] of segments.entries()) {
    const region = lines.slice(from, to);
    let hit;
    let next;
    if (/^\d+$/.test(segment)) {
      const level = Math.min(...region.filter((l) => l.item).map((l) => l.indent));
      const items = region.map((l, n) => (l.item && l.indent === level ? n : -1)).filter((n) => n >= 0);
      hit = items[Number(segment)];
      if (hit === undefined) break;
      next = items[Number(segment) + 1] ?? region.length;
      best = { start: region[hit].offset + region[hit].indent, end: region[hit].end };
      [from, to] = [from + hit, from + next]; // the dash line holds the item's first key
    } else {
      const level = Math.min(...region.map((l) => l.keyAt));
      hit = region.findIndex((l) => l.keyAt === level && l.key === segment);
      if (hit < 0) break;
      // A key's value runs to the next line at its level ("- " items may share the key's indent).
      next = region.findIndex((l, n) => n > hit && (l.item ? l.indent < level : l.keyAt <= level));
      best = { start: region[hit].offset + level, end: region[hit].end };
      [from, to] = [from + hit + 1, next < 0 ? to : from + next];
    }
    if (depth === segments.length - 1) return { ...best, exact: true };
  }
  return best ? { ...best, exact: false } : null;
}
