// Test helper: a browser's sign-in over plain HTTP (manual redirects, a tough-cookie jar, the IdP's login form) with undici.
import { request } from 'undici';
import { Cookie, CookieJar as ToughCookieJar } from 'tough-cookie';

export interface Hop {
  status: number;
  url: string;
}

export interface FollowInit {
  /** Default GET. 301/302/303 turn into GET as browsers do; 307/308 keep method and body. */
  method?: string;
  /** Added to (and overriding) the browser navigation headers. */
  headers?: Record<string, string>;
  /** Sent as application/x-www-form-urlencoded unless headers say otherwise, like a form submit. */
  body?: string;
  /** Default true: send Accept: text/html and Sec-Fetch-Mode: navigate like a top-level navigation. */
  navigation?: boolean;
  /** Stop before requesting a URL starting with this prefix (or matching the predicate), e.g. a redirect_uri nobody serves. */
  stopAt?: string | ((url: URL) => boolean);
  /** Default 20. */
  maxHops?: number;
}

export interface FollowResult {
  /** The last URL requested, or the stopAt URL that was not requested. */
  finalUrl: string;
  /** Status of the last response (for a stopAt URL: of the redirect pointing there). */
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Every response on the way, in order. */
  hops: Hop[];
  /** True when following ended at stopAt. */
  stopped: boolean;
}

export interface LoginResult {
  finalUrl: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  jar: CookieJar;
  hops: Hop[];
}

export interface ParsedForm {
  action: URL;
  method: string;
  fields: URLSearchParams;
}

const BROWSER_NAVIGATION = {
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'sec-fetch-mode': 'navigate',
  'sec-fetch-dest': 'document',
  'user-agent': 'portcullis-tests/1 (browserless navigation)',
};

/**
 * A browser-like cookie store: tough-cookie (RFC 6265) keyed by host name, not port — every 127.0.0.1
 * server shares cookies, which is exactly the situation the proxy and the dev IdP are in. Loopback
 * counts as a secure context (Secure and __Host- cookies over http://127.0.0.1), as in Chromium; a
 * cookie breaking its __Host-/__Secure- prefix rules, or set for a foreign domain, is dropped silently,
 * as a browser does. SameSite is not enforced: every request is a same-site top-level navigation.
 * Expiry follows Date.now(), which some tests move (set with `now`, read by tough-cookie's Date.now()).
 */
export class CookieJar {
  private jar = new ToughCookieJar(undefined, { allowSecureOnLocal: true });

  /** Stores the Set-Cookie headers of a response to `url`. */
  store(setCookie: string | string[] | undefined, url: string | URL): void {
    if (setCookie === undefined) return;
    for (const line of Array.isArray(setCookie) ? setCookie : [setCookie]) {
      // Max-Age becomes an expiry time on arrival, as in a browser: tough-cookie reckons it from the
      // cookie's last use, which it stamps with the real time, so a moved Date.now() would expire a
      // 10-minute cookie at once after a move of more than 10 minutes.
      const now = new Date(Date.now());
      const cookie = Cookie.parse(line);
      if (cookie && typeof cookie.maxAge === 'number') {
        cookie.expires = cookie.maxAge <= 0 ? new Date(0) : new Date(now.getTime() + cookie.maxAge * 1000);
        cookie.maxAge = null;
      }
      this.jar.setCookieSync(cookie ?? line, url, { now, ignoreError: true });
    }
  }

  /** The Cookie header a browser would send to `url` ('' when none). */
  header(url: string | URL): string {
    return this.jar.getCookieStringSync(url);
  }

  /** The value of a cookie by name; with `url`, only one that would be sent there. */
  get(name: string, url?: string | URL): string | undefined {
    return this.cookies(url).find((c) => c.key === name)?.value;
  }

  /** Sets a host-only cookie (path /) for `url`'s host by hand, e.g. a tampered session cookie. */
  set(name: string, value: string, url: string | URL): void {
    this.jar.setCookieSync(new Cookie({ key: name, value, path: '/' }), url, { now: new Date(Date.now()) });
  }

  /** Removes every cookie of that name, whatever its host or path. */
  delete(name: string): void {
    const all = this.jar.serializeSync()!;
    this.jar = ToughCookieJar.deserializeSync({ ...all, cookies: all.cookies.filter((c) => c.key !== name) });
  }

  /** Names of the stored (unexpired) cookies; with `url`, only those that would be sent there. */
  names(url?: string | URL): string[] {
    return [...new Set(this.cookies(url).map((c) => c.key))];
  }

  /** Unexpired cookies: those sent to `url`, or all of them. */
  private cookies(url?: string | URL): Cookie[] {
    const now = Date.now();
    if (url !== undefined) return this.jar.getCookiesSync(url); // expiry by Date.now(), moved or not
    return this.jar.serializeSync()!.cookies.map((c) => Cookie.fromJSON(c)!).filter((c) => c.TTL(now) > 0);
  }
}

/**
 * Follows redirects by hand, storing cookies on every hop, until a non-redirect response (or stopAt).
 * Bodies of every hop are read, so no connection is left hanging.
 */
export async function followRedirects(url: string | URL, jar: CookieJar, init: FollowInit = {}): Promise<FollowResult> {
  const hops: Hop[] = [];
  const maxHops = init.maxHops ?? 20;
  let current = new URL(url);
  let method = (init.method ?? 'GET').toUpperCase();
  let body = init.body;
  let extraHeaders: Record<string, string> = { ...init.headers };
  if (body !== undefined && !Object.keys(extraHeaders).some((k) => k.toLowerCase() === 'content-type')) {
    extraHeaders['content-type'] = 'application/x-www-form-urlencoded';
  }
  if (shouldStop(init.stopAt, current)) {
    return { finalUrl: current.href, status: 0, headers: {}, body: '', hops, stopped: true };
  }
  for (;;) {
    const cookie = jar.header(current);
    const headers: Record<string, string> = {
      ...(init.navigation === false ? {} : BROWSER_NAVIGATION),
      ...extraHeaders,
      ...(cookie ? { cookie } : {}),
    };
    const res = await request(current, { method: method as 'GET', headers, body });
    const text = await res.body.text();
    hops.push({ status: res.statusCode, url: current.href });
    jar.store(res.headers['set-cookie'], current);
    const location = res.headers.location;
    if (![301, 302, 303, 307, 308].includes(res.statusCode) || typeof location !== 'string') {
      return { finalUrl: current.href, status: res.statusCode, headers: res.headers, body: text, hops, stopped: false };
    }
    const next = new URL(location, current);
    if (shouldStop(init.stopAt, next)) {
      return { finalUrl: next.href, status: res.statusCode, headers: res.headers, body: text, hops, stopped: true };
    }
    if (hops.length >= maxHops) {
      throw new Error(`more than ${maxHops} redirects:\n${hops.map((h) => `  ${h.status} ${h.url}`).join('\n')}`);
    }
    if (res.statusCode !== 307 && res.statusCode !== 308) {
      method = 'GET';
      body = undefined;
      extraHeaders = Object.fromEntries(Object.entries(extraHeaders).filter(([k]) => k.toLowerCase() !== 'content-type'));
    }
    current = next;
  }
}

/**
 * Signs in the way a person would: open `startUrl`, follow redirects to the IdP, fill in the form that
 * has a `login` field, submit it, and follow redirects until a page that is not a redirect. A wrong
 * password ends on the IdP's form again (status 200) instead of looping.
 */
export async function loginViaHttp(
  startUrl: string,
  opts: { user: string; password: string; jar?: CookieJar; stopAt?: FollowInit['stopAt']; maxHops?: number; fields?: Record<string, string> },
): Promise<LoginResult> {
  const jar = opts.jar ?? new CookieJar();
  const hops: Hop[] = [];
  let result = await followRedirects(startUrl, jar, { stopAt: opts.stopAt, maxHops: opts.maxHops });
  hops.push(...result.hops);
  const form = result.stopped ? undefined : parseForms(result.body, result.finalUrl).find((f) => f.fields.has('login'));
  if (form) {
    form.fields.set('login', opts.user);
    form.fields.set('password', opts.password);
    // Other choices on the form, e.g. the dev IdP's sign-in method (`acr`).
    for (const [k, v] of Object.entries(opts.fields ?? {})) form.fields.set(k, v);
    result = await followRedirects(form.action, jar, {
      method: form.method,
      body: form.fields.toString(),
      headers: { origin: new URL(result.finalUrl).origin },
      stopAt: opts.stopAt,
      maxHops: opts.maxHops,
    });
    hops.push(...result.hops);
  }
  return { finalUrl: result.finalUrl, status: result.status, headers: result.headers, body: result.body, jar, hops };
}

/** The forms of an HTML page with their resolved action and the values of their named inputs. */
export function parseForms(html: string, pageUrl: string | URL): ParsedForm[] {
  const forms: ParsedForm[] = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = parseAttributes(m[1] ?? '');
    const fields = new URLSearchParams();
    for (const input of (m[2] ?? '').matchAll(/<(input|textarea)\b([^>]*)>/gi)) {
      const a = parseAttributes(input[2] ?? '');
      if (a.name === undefined) continue;
      const type = (a.type ?? 'text').toLowerCase();
      if (['submit', 'button', 'image', 'reset'].includes(type)) continue;
      if ((type === 'checkbox' || type === 'radio') && a.checked === undefined) continue;
      fields.append(a.name, a.value ?? (type === 'checkbox' ? 'on' : ''));
    }
    // A <select> submits its selected option (the first one when none is marked), as a browser does.
    for (const sel of (m[2] ?? '').matchAll(/<select\b([^>]*)>([\s\S]*?)<\/select>/gi)) {
      const name = parseAttributes(sel[1] ?? '').name;
      if (name === undefined) continue;
      const options = [...(sel[2] ?? '').matchAll(/<option\b([^>]*)>/gi)].map((o) => parseAttributes(o[1] ?? ''));
      const chosen = options.find((o) => o.selected !== undefined) ?? options[0];
      if (chosen) fields.append(name, chosen.value ?? '');
    }
    forms.push({
      action: new URL(attrs.action ?? '', pageUrl),
      method: (attrs.method ?? 'GET').toUpperCase(),
      fields,
    });
  }
  return forms;
}

function parseAttributes(source: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of source.matchAll(/([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g)) {
    out[m[1]!.toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (all, e: string) => {
    const lower = e.toLowerCase();
    if (lower.startsWith('#x')) return String.fromCodePoint(parseInt(lower.slice(2), 16));
    if (lower.startsWith('#')) return String.fromCodePoint(Number(lower.slice(1)));
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[lower] ?? all;
  });
}

function shouldStop(stopAt: FollowInit['stopAt'], url: URL): boolean {
  if (stopAt === undefined) return false;
  return typeof stopAt === 'string' ? url.href.startsWith(stopAt) : stopAt(url);
}
