// Beside the pipeline: the few HTML pages Portcullis shows people (errors, access denied, sign-out
// confirmation). Everything echoed is HTML-escaped; no inline script; no claim values beyond the
// user's own name and e-mail.

type WellFormable = { isWellFormed(): boolean; toWellFormed(): string };

/** Longest text echoed on a page (a claim can be anything an IdP sends); longer is cut, with "…". */
const TEXT_MAX = 2048;
/** Longest link rendered; a longer one is left out rather than cut into a different address. */
const URL_MAX = 16384;

/**
 * Any value as display text: strings as they are, numbers and booleans as text, anything else
 * empty; lone UTF-16 surrogates become U+FFFD (so the page encodes to well-formed UTF-8), and
 * control characters other than TAB, LF and CR (C0, DEL, C1 U+0080–U+009F) are removed.
 */
function text(x: unknown): string {
  const s = typeof x === 'string' ? x : typeof x === 'number' || typeof x === 'boolean' || typeof x === 'bigint' ? String(x) : '';
  if (!/[^\t\n\r\x20-\x7e]/.test(s)) return s;
  const w = (s as unknown as WellFormable).isWellFormed() ? s : (s as unknown as WellFormable).toWellFormed();
  return w.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+/g, '');
}

/** At most `max` UTF-16 units, never ending in half a surrogate pair; "…" marks a cut. */
function clip(x: unknown, max = TEXT_MAX): string {
  if (typeof x !== 'string' || x.length <= max) return text(x);
  const end = max - (x.charCodeAt(max - 1) >= 0xd800 && x.charCodeAt(max - 1) <= 0xdbff ? 1 : 0);
  return `${text(x.slice(0, end))}…`;
}

/** HTML-escapes any value (after `text`): safe in element content and in quoted attributes. */
export function escapeHtml(s: string): string {
  return text(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]!));
}

/** Escaped, clipped display text. */
function show(x: unknown): string {
  return escapeHtml(clip(x));
}

/** An escaped link target, or undefined when there is none or it is too long to render whole. */
function href(x: unknown): string | undefined {
  return typeof x === 'string' && x !== '' && x.length <= URL_MAX ? escapeHtml(x) : undefined;
}

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${show(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}.muted{color:#666;font-size:.9rem}a.button,button{display:inline-block;padding:.5rem 1rem;border:1px solid #345;border-radius:4px;background:#345;color:#fff;text-decoration:none;font:inherit;cursor:pointer}
code{background:#f3f3f3;padding:0 .2rem}</style></head>
<body><main>${body}</main></body></html>`;
}

/**
 * An error answer's body: the HTML page (`html`: the client prefers it — negotiated in
 * door/respond.ts, the one caller), else the JSON shape `{ error, message, …fields, signInUrl?, requestId }`.
 */
export function renderError(e: { statusCode: number; code: string; message: string }, html: boolean, requestId: string, signInUrl?: string, fields: Record<string, string> = {}): { type: string; body: string } {
  const status = Number.isInteger(e.statusCode) ? e.statusCode : 500;
  if (html) {
    return {
      type: 'text/html; charset=utf-8',
      body: errorPage({ status, title: status >= 500 ? 'Service problem' : 'Request not accepted', message: e.message, code: e.code, signInUrl, requestId }),
    };
  }
  const link = typeof signInUrl === 'string' && signInUrl !== '' && signInUrl.length <= URL_MAX ? text(signInUrl) : undefined;
  return {
    type: 'application/json; charset=utf-8',
    body: JSON.stringify({ error: clip(e.code), message: clip(e.message), ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, clip(v)])), ...(link ? { signInUrl: link } : {}), requestId: clip(requestId) }),
  };
}

export function errorPage(o: { status: number; title: string; message: string; code: string; signInUrl?: string; requestId?: string }): string {
  const signIn = href(o.signInUrl);
  const retry = signIn ? `<p><a class="button" href="${signIn}">Sign in again</a></p>` : '';
  const rid = o.requestId ? ` · request id <code>${show(o.requestId)}</code>` : '';
  return layout(o.title, `<h1>${show(o.title)}</h1><p>${show(o.message)}</p>${retry}
<p class="muted">Error <code>${show(o.code)}</code> (HTTP ${show(o.status)})${rid}</p>`);
}

/** `note`: one more paragraph, e.g. why the user's groups are missing (signin/group-overage.ts). */
export function forbiddenPage(o: { user: string; route: string; signOutUrl: string; note?: string | undefined }): string {
  const signOut = href(o.signOutUrl);
  return layout('Access denied', `<h1>You don't have access to this page</h1>
<p>You are signed in as <strong>${show(o.user)}</strong>, but your account is not allowed to use <strong>${show(o.route)}</strong>.</p>
${o.note ? `<p id="groups-unavailable"><strong>${show(o.note)}</strong></p>\n` : ''}<p>If you think you should have access, ask the application's owner. If you signed in with the wrong account, sign out and sign in again.</p>
${signOut ? `<p><a class="button" href="${signOut}">Sign out / switch account</a></p>` : ''}`);
}

export function signOutPage(o: { user: string | undefined; action: string; rd: string }): string {
  const who = o.user ? `<p>You are signed in as <strong>${show(o.user)}</strong>.</p>` : '<p>You are not signed in.</p>';
  return layout('Sign out', `<h1>Sign out?</h1>${who}
<form method="post" action="${escapeHtml(o.action)}"><input type="hidden" name="rd" value="${escapeHtml(o.rd)}"><button type="submit">Sign out</button></form>`);
}

export function signedOutPage(): string {
  return layout('Signed out', '<h1>You are signed out</h1><p><a href="/">Back to the start page</a></p>');
}

/**
 * The sign-in chooser (several providers, no `?provider=`): one button per provider the page offers,
 * its `displayName` and optional `domainHint`. Links only: no form, no script; every value escaped.
 */
export function chooserPage(o: { providers: ReadonlyArray<{ name: string; hint?: string | undefined; href: string }> }): string {
  const items = o.providers.map((p) => {
    const link = href(p.href);
    if (!link) return '';
    const hint = p.hint ? ` <span class="muted">${show(p.hint)}</span>` : '';
    return `<li><a class="button" href="${link}">${show(p.name)}</a>${hint}</li>`;
  }).join('\n');
  return layout('Sign in', `<h1>Sign in</h1><p>Choose how to sign in:</p>
<ul style="list-style:none;padding:0;line-height:3">${items}</ul>`);
}
