// Beside the pipeline: the few HTML pages Portcullis shows people (errors, access denied, sign-out
// confirmation). Everything echoed is HTML-escaped; no inline script; no claim values beyond the
// user's own name and e-mail.

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]!));
}

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}.muted{color:#666;font-size:.9rem}a.button,button{display:inline-block;padding:.5rem 1rem;border:1px solid #345;border-radius:4px;background:#345;color:#fff;text-decoration:none;font:inherit;cursor:pointer}
code{background:#f3f3f3;padding:0 .2rem}</style></head>
<body><main>${body}</main></body></html>`;
}

/**
 * An error answer's body for a client: the HTML page for browsers (Accept: text/html), JSON otherwise.
 * The Fastify error handler and the hot path both answer with this.
 */
export function renderError(e: { statusCode: number; code: string; message: string }, accept: string | string[] | undefined, requestId: string, signInUrl?: string): { type: string; body: string } {
  if (typeof accept === 'string' && accept.includes('text/html')) {
    return {
      type: 'text/html; charset=utf-8',
      body: errorPage({ status: e.statusCode, title: e.statusCode >= 500 ? 'Service problem' : 'Request not accepted', message: e.message, code: e.code, signInUrl, requestId }),
    };
  }
  return { type: 'application/json; charset=utf-8', body: JSON.stringify({ error: e.code, message: e.message, ...(signInUrl ? { signInUrl } : {}), requestId }) };
}

export function errorPage(o: { status: number; title: string; message: string; code: string; signInUrl?: string; requestId?: string }): string {
  const retry = o.signInUrl ? `<p><a class="button" href="${escapeHtml(o.signInUrl)}">Sign in again</a></p>` : '';
  const rid = o.requestId ? ` · request id <code>${escapeHtml(o.requestId)}</code>` : '';
  return layout(o.title, `<h1>${escapeHtml(o.title)}</h1><p>${escapeHtml(o.message)}</p>${retry}
<p class="muted">Error <code>${escapeHtml(o.code)}</code> (HTTP ${o.status})${rid}</p>`);
}

export function forbiddenPage(o: { user: string; route: string; signOutUrl: string }): string {
  return layout('Access denied', `<h1>You don't have access to this page</h1>
<p>You are signed in as <strong>${escapeHtml(o.user)}</strong>, but your account is not allowed to use <strong>${escapeHtml(o.route)}</strong>.</p>
<p>If you think you should have access, ask the application's owner. If you signed in with the wrong account, sign out and sign in again.</p>
<p><a class="button" href="${escapeHtml(o.signOutUrl)}">Sign out / switch account</a></p>`);
}

export function signOutPage(o: { user: string | undefined; action: string; rd: string }): string {
  const who = o.user ? `<p>You are signed in as <strong>${escapeHtml(o.user)}</strong>.</p>` : '<p>You are not signed in.</p>';
  return layout('Sign out', `<h1>Sign out?</h1>${who}
<form method="post" action="${escapeHtml(o.action)}"><input type="hidden" name="rd" value="${escapeHtml(o.rd)}"><button type="submit">Sign out</button></form>`);
}

export function signedOutPage(): string {
  return layout('Signed out', '<h1>You are signed out</h1><p><a href="/">Back to the start page</a></p>');
}
