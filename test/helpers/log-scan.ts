// Test helper: search captured log lines for secrets in every form a log line can carry them, not
// just its text. Each line is parsed as JSON and every value walked (keys included): a secret can
// hide in a serialized Buffer (`{"type":"Buffer","data":[71,69,84,…]}` — an array of byte values,
// whose text never contains the secret), behind base64 / base64url (a Basic credential, a cookie
// holding a token), behind percent-encoding (a query string, a form body) or hex. Each string found
// is searched as is and again after each decoding that yields something, a few levels deep (a
// percent-encoded base64 value, base64 inside a Buffer…).

export interface LogLeak {
  /** The secret's label. */
  what: string;
  /** Where in the line, e.g. `err.rawPacket.data (bytes → latin1)`. */
  where: string;
  /** The line, shortened. */
  line: string;
}

/** How many decodings are chained on one value (e.g. bytes → base64 → percent). */
const MAX_DECODE_DEPTH = 3;
/** Runs of base64/base64url alphabet at least this long are decoded (shorter ones cannot hold a 16-character secret). */
const BASE64_RUN = /[A-Za-z0-9+/_-]{12,}={0,2}/g;
const HEX_RUN = /(?:[0-9a-fA-F]{2}){8,}/g;
const PERCENT = /%[0-9a-fA-F]{2}/;

interface Text { text: string; form: string }

/** Every text a log line holds: its raw text, then each JSON string, key and byte array, each with its decoded forms. */
export function textsOfLogLine(line: string): Text[] {
  const out: Text[] = [];
  const seen = new Set<string>();
  const add = (text: string, form: string, depth: number) => {
    if (text.length === 0 || seen.has(text)) return;
    seen.add(text);
    out.push({ text, form });
    if (depth < MAX_DECODE_DEPTH) for (const d of decodings(text)) add(d.text, `${form} → ${d.form}`, depth + 1);
  };
  const addBytes = (bytes: Buffer, form: string) => {
    add(bytes.toString('latin1'), `${form} (bytes → latin1)`, 1);
    add(bytes.toString('utf8'), `${form} (bytes → utf8)`, 1);
  };
  let parsed: unknown;
  try { parsed = JSON.parse(line); } catch { add(line, 'line', 0); return out; }
  const walk = (v: unknown, path: string) => {
    if (typeof v === 'string') add(v, path, 0);
    else if (Array.isArray(v)) {
      if (v.length > 0 && v.every((n) => Number.isInteger(n) && n >= 0 && n <= 255)) addBytes(Buffer.from(v as number[]), path);
      v.forEach((x, i) => { if (typeof x !== 'number') walk(x, `${path}[${i}]`); });
    } else if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      // {"type":"Buffer","data":[…]} is covered by the byte-array rule on `data`; named here for the report.
      if (o.type === 'Buffer' && Array.isArray(o.data)) addBytes(Buffer.from((o.data as unknown[]).filter((n): n is number => typeof n === 'number')), `${path} (Buffer)`);
      for (const [k, x] of Object.entries(o)) {
        const p = path ? `${path}.${k}` : k;
        add(k, `key ${p}`, 0);
        walk(x, p);
      }
    }
  };
  walk(parsed, '');
  // The text as written too (fields first, so a report names the field).
  add(line, 'line', 0);
  return out;
}

/** The texts one decoding step gets out of `s`: percent-decoding, and base64/base64url and hex runs. */
function decodings(s: string): Text[] {
  const out: Text[] = [];
  if (PERCENT.test(s)) {
    const latin1 = s.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    out.push({ text: latin1, form: 'percent-decoded' });
    out.push({ text: Buffer.from(latin1, 'latin1').toString('utf8'), form: 'percent-decoded (utf8)' });
    const plus = latin1.replace(/\+/g, ' ');
    if (plus !== latin1) out.push({ text: plus, form: 'form-decoded' });
  }
  for (const m of s.matchAll(BASE64_RUN)) {
    // The encoded value may start anywhere in the run (e.g. glued to a prefix): try each alignment.
    for (let shift = 0; shift < 4; shift++) {
      const run = m[0].slice(shift);
      if (run.length < 12) break;
      const bytes = Buffer.from(run.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      out.push({ text: bytes.toString('latin1'), form: `base64 @${m.index! + shift}` });
      out.push({ text: bytes.toString('utf8'), form: `base64 @${m.index! + shift} (utf8)` });
    }
  }
  for (const m of s.matchAll(HEX_RUN)) {
    out.push({ text: Buffer.from(m[0], 'hex').toString('latin1'), form: `hex @${m.index}` });
  }
  return out;
}

/** The forms a secret is looked for in, besides itself (an encoded secret inside a longer encoded blob is found by decoding). */
function secretForms(secret: string): string[] {
  const b = Buffer.from(secret, 'utf8');
  return [...new Set([
    secret,
    encodeURIComponent(secret),
    b.toString('base64').replace(/=+$/, ''),
    b.toString('base64url'),
    b.toString('hex'),
  ])];
}

/** Every place a secret occurs in `lines`, in any form; `secrets` maps a label to its value. */
export function findSecretsInLogs(lines: readonly string[], secrets: ReadonlyMap<string, string>): LogLeak[] {
  const leaks: LogLeak[] = [];
  const wanted = [...secrets].map(([what, value]) => ({ what, forms: secretForms(value) }));
  for (const line of lines) {
    const texts = textsOfLogLine(line);
    for (const { what, forms } of wanted) {
      const hit = texts.find((t) => forms.some((f) => t.text.includes(f)));
      if (hit) leaks.push({ what, where: hit.form, line: line.slice(0, 300) });
    }
  }
  return leaks;
}
