/**
 * Unknown-key detection for `%%pod` YAML, driven by the schema the server
 * extension serves (podmagic.schema.as_json()). A line-based scan: enough to
 * follow block mappings, `- ` list items, block scalars and one-line flow
 * mappings, which is what `%%pod` cells contain.
 */

/** podmagic.schema.as_json() */
export interface PodSchema {
  root: Record<string, string>;
  sections: Record<string, Record<string, string>>;
  builtin_variables: string[];
}

/** An unknown key and where it is (offsets into the scanned text). */
export interface IKeyProblem {
  from: number;
  to: number;
  key: string;
  message: string;
}

type Allowed = Record<string, string> | null; // null: anything goes

interface IEntry {
  col: number;
  key: string | null; // null for a `- ` list item
}

const KEY_RE = /^([A-Za-z_][\w.-]*|"[^"\n]*"|'[^'\n]*')[ \t]*:(?=[ \t]|$)/;
const BLOCK_SCALAR_RE = /^[|>][-+0-9]*[ \t]*(#.*)?$/;

/** Whether a cell's text is a `%%pod` cell. */
export function isPodCell(text: string): boolean {
  return /^%%pod(\s|$)/.test(text);
}

/** The keys allowed under `key` given the keys allowed where `key` sits. */
function childAllowed(schema: PodSchema, allowed: Allowed, key: string): Allowed {
  if (allowed === null || !(key in allowed)) {
    return null;
  }
  const kind = allowed[key];
  if (kind === 'section' || kind === 'list[section]' || kind === 'run') {
    return schema.sections[key] ?? null;
  }
  return null;
}

/** The keys allowed for a key whose ancestors are `entries`. */
function allowedAt(schema: PodSchema, entries: IEntry[]): Allowed {
  let allowed: Allowed = schema.root;
  for (const entry of entries) {
    if (entry.key !== null) {
      allowed = childAllowed(schema, allowed, entry.key);
    }
  }
  return allowed;
}

/** Edit distance, for did-you-mean. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** The message for an unknown key, with a did-you-mean when one is close. */
export function unknownKeyMessage(key: string, allowed: Record<string, string>): string {
  let best = '';
  let bestDistance = Infinity;
  for (const candidate of Object.keys(allowed)) {
    const d = distance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const hint = bestDistance <= Math.max(2, key.length / 3) ? ` (did you mean '${best}'?)` : '';
  return `unknown key '${key}'${hint}`;
}

/** Keys of a one-line flow mapping `{a: 1, b: [x, y]}` starting at `start`. */
function flowKeys(line: string, start: number): Array<[string, number]> {
  const keys: Array<[string, number]> = [];
  let depth = 0;
  let quote = '';
  let expectKey = false;
  for (let i = start; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      quote = ch === quote ? '' : quote;
      continue;
    }
    if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === '{' || ch === '[') {
      depth++;
      expectKey = depth === 1 && ch === '{';
      continue;
    } else if (ch === '}' || ch === ']') {
      depth--;
    } else if (ch === ',' && depth === 1) {
      expectKey = true;
      continue;
    } else if (expectKey && depth === 1 && /\S/.test(ch)) {
      const m = /^([A-Za-z_][\w.-]*)[ \t]*:/.exec(line.slice(i));
      if (m) {
        keys.push([m[1], i]);
      }
    }
    if (/\S/.test(ch)) {
      expectKey = false;
    }
  }
  return keys;
}

/** Pop entries that a line at `col` closes. */
function popTo(stack: IEntry[], col: number, isItem: boolean): void {
  while (stack.length) {
    const top = stack[stack.length - 1];
    // A `- ` item may sit at its parent key's column; a key closes both.
    const closes = top.col > col || (top.col === col && (!isItem || top.key === null));
    if (!closes) {
      return;
    }
    stack.pop();
  }
}

/** The unknown keys of a `%%pod` cell's text. */
export function unknownKeys(text: string, schema: PodSchema): IKeyProblem[] {
  const problems: IKeyProblem[] = [];
  const stack: IEntry[] = [];
  let offset = 0;
  let scalarCol = -1; // inside a block scalar owned by a key at this column
  const lines = text.split('\n');
  lines.forEach((line, index) => {
    const lineStart = offset;
    offset += line.length + 1;
    if (index === 0 && isPodCell(line)) {
      return;
    }
    const indent = line.length - line.trimStart().length;
    const body = line.trim();
    if (scalarCol >= 0 && (body === '' || indent > scalarCol)) {
      return;
    }
    scalarCol = -1;
    if (body === '' || body.startsWith('#') || body === '---') {
      return;
    }
    let col = indent;
    let rest = line.slice(indent);
    while (/^-([ \t]|$)/.test(rest)) {
      popTo(stack, col, true);
      stack.push({ col, key: null });
      const skip = 1 + (rest.slice(1).length - rest.slice(1).trimStart().length);
      col += skip;
      rest = rest.slice(skip);
    }
    const match = KEY_RE.exec(rest);
    if (!match) {
      if (rest.startsWith('{')) {
        checkFlow(line, col, allowedAt(schema, stack), lineStart, problems);
      }
      return;
    }
    popTo(stack, col, false);
    const key = match[1].replace(/^["']|["']$/g, '');
    const allowed = allowedAt(schema, stack);
    if (allowed !== null && !(key in allowed)) {
      problems.push({ from: lineStart + col, to: lineStart + col + match[1].length, key, message: unknownKeyMessage(key, allowed) });
    }
    stack.push({ col, key });
    const value = rest.slice(match[0].length).trim();
    if (BLOCK_SCALAR_RE.test(value)) {
      scalarCol = col;
    } else if (value.startsWith('{')) {
      const start = line.indexOf('{', col + match[0].length);
      checkFlow(line, start, childAllowed(schema, allowed, key), lineStart, problems);
    }
  });
  return problems;
}

/** Check the keys of a one-line flow mapping against `allowed`. */
function checkFlow(line: string, start: number, allowed: Allowed, lineStart: number, problems: IKeyProblem[]): void {
  if (allowed === null) {
    return;
  }
  for (const [key, at] of flowKeys(line, start)) {
    if (!(key in allowed)) {
      problems.push({ from: lineStart + at, to: lineStart + at + key.length, key, message: unknownKeyMessage(key, allowed) });
    }
  }
}
