// Sign-in stage: where people may be sent after sign-in or sign-out. Everything not provably on
// our own origin or an allowed domain falls back to "/" — open redirects are how phishing rides
// on a trusted login page.

export interface RedirectPolicy {
  /** publicUrl's origin, e.g. https://apps.example.com */
  origin: string;
  /** `.example.com` = the domain and any subdomain; `app.example.com` = that host only. */
  allowedDomains: readonly string[];
}

function hostAllowed(host: string, policy: RedirectPolicy): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  for (const d of policy.allowedDomains) {
    const dom = d.toLowerCase();
    if (dom.startsWith('.')) {
      // Label boundary: `.example.com` allows `example.com` and `a.example.com`, never `evilexample.com`.
      if (h === dom.slice(1) || h.endsWith(dom)) return true;
    } else if (h === dom) return true;
  }
  return false;
}

/**
 * Returns a safe absolute URL to redirect to, or the fallback (publicUrl + "/").
 * `rd` may be relative ("/app?x=1") or absolute. It is percent-decoded before checking so that
 * `/%5cevil.com` or `/%09/evil.com` cannot smuggle a host past the checks.
 */
export function safeRedirect(rd: string | undefined, policy: RedirectPolicy): string {
  const fallback = `${policy.origin}/`;
  if (typeof rd !== 'string' || rd === '' || rd.length > 4096) return fallback;
  let decoded: string;
  try {
    decoded = decodeURIComponent(rd);
  } catch {
    return fallback;
  }
  // Control characters, whitespace and backslashes have no business in a return URL; browsers strip
  // or rewrite them (`/\evil.com` → `//evil.com`), so any of them means "not ours".
  if (/[\x00-\x20\x7f\\]/.test(decoded) || /[\x00-\x20\x7f\\]/.test(rd)) return fallback;
  if (decoded.startsWith('/')) {
    // Scheme-relative `//host` is another site.
    if (decoded.startsWith('//')) return fallback;
    let u: URL;
    try { u = new URL(rd, policy.origin); } catch { return fallback; }
    return u.origin === policy.origin ? u.href : fallback;
  }
  // Absolute URLs: only http(s) with an explicit `scheme://` (`https:evil.com` is not accepted).
  if (!/^https?:\/\//i.test(decoded) || !/^https?:\/\//i.test(rd)) return fallback;
  let u: URL;
  try { u = new URL(rd); } catch { return fallback; }
  if (u.username || u.password) return fallback;
  if (u.origin === policy.origin) return u.href;
  const pub = new URL(policy.origin);
  // Other hosts: only https when publicUrl is https, and only allowed domains.
  if (pub.protocol === 'https:' && u.protocol !== 'https:') return fallback;
  return hostAllowed(u.hostname, policy) ? u.href : fallback;
}
