// Test helper: one call to the admin endpoints (/admin/sessions…) on a metrics listener.
import { request } from 'undici';

/** `token: null` sends no Authorization header. */
export async function adminRequest(base: string, token: string | null, method: 'GET' | 'POST', path: string, body?: unknown) {
  const r = await request(`${base}${path}`, {
    method,
    headers: { ...(token !== null ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.body.text();
  let json: any; // whatever the endpoint answered
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.statusCode, headers: r.headers, text, json };
}
