// Session stage: the Redis session store. The cookie carries only a sealed ticket; the session body
// lives in Redis, encrypted with a key that exists only inside that ticket.
//
//   cookie   = codec.seal(cookieName, { id, key })       id, key: 32 random bytes each (base64url)
//   Redis key = keyPrefix + hex(sha256(id))              a dump of Redis yields no usable cookie id
//   value    = 0x01 | iv(12) | AES-256-GCM(key, JSON(record), aad = Redis key) | tag(16)
//
// So Redis alone cannot read or forge a session (no ticket keys), the cookie alone holds no session
// (no body), and a body copied to another Redis key does not open (the key is the associated data).
//
// Failure model: a Redis that is down, unreachable or hung must cost a request milliseconds, not a
// hang — commands are never queued while disconnected (enableOfflineQueue: false), each command has
// a timeout, and every Redis failure becomes ERR_SESSION_STORE_UNAVAILABLE (503). The client
// reconnects by itself, forever, with capped backoff; healthy() (→ /readyz) follows its status and,
// for Redis Cluster, the cluster's own state (a lost shard: CLUSTER INFO says fail).
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import { errors } from '../errors.js';
import type { SessionCodec } from './codec.js';
import { idpNameKey } from './idp-names.js';
import type { SessionRecord } from './record.js';
import { isRecord, type SessionStore } from './store.js';

/** Time allowed to open a TCP (and TLS) connection to Redis before that attempt counts as failed. */
const CONNECT_TIMEOUT_MS = 2000;
/** A command unanswered for this long fails (a hung or partitioned Redis must not hang requests). */
const COMMAND_TIMEOUT_MS = 1500;
/** Reconnect backoff: 200 ms doubling up to this cap, plus jitter so replicas do not stampede. */
const MAX_RECONNECT_DELAY_MS = 2000;
/**
 * Redis Cluster: how often the cluster's own view (CLUSTER INFO `cluster_state`) is asked for. The
 * client stays "ready" while a shard is down; the cluster says `fail` once slots are uncovered.
 */
export const CLUSTER_PROBE_MS = 2000;
/** Redis Cluster: a node's failures are one outage (one log line) until it has been quiet this long. */
const NODE_QUIET_MS = 30_000;

const ID_BYTES = 32;
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const BODY_VERSION = 0x01;
/** 32 bytes in unpadded base64url. */
const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;

export type RedisClient = Redis | Cluster;

/** The operator log this store writes to (a Fastify/pino logger fits). Never given URLs, keys or values. */
export interface StoreLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

const silentLog: StoreLog = { info() {}, warn() {}, debug() {} };

export interface RedisStoreOptions {
  /** `session.redis.url`; see parseRedisUrl for the accepted forms. Ignored when `client` is given. */
  url: string;
  /** Prepended to every key this store touches (`session.redis.keyPrefix`, default `portcullis:`). */
  keyPrefix: string;
  /** Redis TTL of a session body, in ms: the absolute timeout. Idle and absolute timeouts are enforced by the session manager; the TTL only guarantees Redis forgets. */
  ttlMs: number;
  /** A ready-made ioredis client (e.g. for options a URL cannot express). The caller keeps ownership: close() does not close it. */
  client?: RedisClient;
  /** The first provider's id: its subjects and IdP sids keep the index keys written before several providers (revocation.ts idpNameKey). Default `default`. */
  firstProvider?: string;
}

interface Ticket {
  id: string;
  key: Buffer;
  /** Sealed with an older session secret: hand out a re-sealed ticket on the next write. */
  stale: boolean;
}

export class RedisStore implements SessionStore {
  readonly kind = 'redis' as const;
  readonly client: RedisClient;
  private readonly ownsClient: boolean;
  readonly keyPrefix: string;
  private readonly ttlMs: number;
  /** Logs the first failure of an outage as a warning and the rest at debug: reconnect attempts repeat every ~2 s. */
  private down = false;
  private readonly onError = (err: Error) => {
    if (!this.down) this.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'redis session store unavailable; reconnecting');
    else this.log.debug({ err: { message: err.message } }, 'redis reconnect attempt failed');
    this.down = true;
  };
  private readonly onReady = () => {
    if (this.down) this.log.info({}, 'redis session store reconnected');
    this.down = false;
  };
  /** Redis Cluster: what CLUSTER INFO last said (`fail`: slots uncovered — a shard down and not failed over). */
  private clusterState: 'ok' | 'fail' | 'unknown' = 'unknown';
  private clusterProbe: NodeJS.Timeout | undefined;
  private probing = false;
  /** Redis Cluster: nodes (host:port) that failed → when they last did; a node is logged again only after NODE_QUIET_MS without failures. */
  private readonly nodesDown = new Map<string, number>();
  private readonly onNodeError = (err: Error, node: string) => {
    const last = this.nodesDown.get(node);
    if (last === undefined || Date.now() - last > NODE_QUIET_MS) this.log.warn({ node, err: { message: err.message } }, 'redis cluster node unreachable: keys in its slots fail until it is back or failed over');
    this.nodesDown.set(node, Date.now());
  };

  constructor(
    private readonly codec: SessionCodec,
    private readonly cookieName: string,
    opts: RedisStoreOptions,
    private readonly log: StoreLog = silentLog,
  ) {
    if (!Number.isSafeInteger(opts.ttlMs) || opts.ttlMs <= 0) throw new Error(`RedisStore: ttlMs must be a positive integer (got ${opts.ttlMs})`);
    this.keyPrefix = opts.keyPrefix;
    this.ttlMs = opts.ttlMs;
    this.firstProvider = opts.firstProvider ?? 'default';
    this.ownsClient = opts.client === undefined;
    this.client = opts.client ?? createRedisClient(opts.url);
    // Without an 'error' listener ioredis prints every failed reconnect to stderr itself.
    this.client.on('error', this.onError);
    this.client.on('ready', this.onReady);
    // A caller's client built with lazyConnect would otherwise stay unconnected: every command here
    // fails fast rather than triggering a connect.
    if (this.client.status === 'wait') this.client.connect().catch(() => {});
    if (this.client instanceof Cluster) {
      this.client.on('node error', this.onNodeError);
      this.clusterProbe = setInterval(() => { void this.probeCluster(); }, CLUSTER_PROBE_MS);
      this.clusterProbe.unref();
    }
  }

  /** Redis Cluster: asks one node for the cluster's state; logs changes. A probe that fails (it may land on the down node) changes nothing. */
  private async probeCluster(): Promise<void> {
    if (this.probing || this.client.status !== 'ready') return;
    this.probing = true;
    let info: unknown;
    try { info = await (this.client as Cluster).cluster('INFO'); } catch { return; } finally { this.probing = false; }
    const state = /cluster_state:ok/.test(String(info)) ? 'ok' : 'fail';
    if (state === 'fail' && this.clusterState !== 'fail') this.log.warn({ nodesDown: [...this.nodesDown.keys()] }, 'redis cluster state is fail (slots uncovered: a shard is down and not failed over); /readyz 503 until it recovers');
    if (state === 'ok' && this.clusterState === 'fail') {
      this.log.info({ nodesDown: [...this.nodesDown.keys()] }, 'redis cluster state ok again (every slot served)');
      this.nodesDown.clear();
    }
    this.clusterState = state;
  }

  async open(cookieValue: string): Promise<{ record: SessionRecord; stale: boolean } | undefined> {
    const ticket = this.readTicket(cookieValue);
    if (!ticket) return undefined;
    const key = this.sessionKey(ticket.id);
    const body = await this.run(() => this.client.getBuffer(key));
    if (body === null) return undefined; // expired, removed, or Redis lost its data: no session
    const record = openBody(ticket.key, key, body);
    if (!isRecord(record)) {
      // The ticket authenticated, so this is not a stray cookie: the stored body was altered or corrupted.
      this.log.warn({}, 'redis session body did not decrypt or has the wrong shape; treating as no session');
      return undefined;
    }
    return { record, stale: ticket.stale };
  }

  /**
   * Writes `record` and returns the cookie value for it. With a `previous` ticket the body is
   * rewritten in place (same id and key; the cookie value only changes when the ticket was sealed
   * with an older secret). The rewrite only updates an entry that still exists (SET … XX): a
   * session ended meanwhile — sign-out, back-channel logout, expiry — is not brought back; the
   * returned cookie then keeps pointing at nothing, which is "no session" on the next request.
   */
  async save(record: SessionRecord, previous: string | undefined): Promise<string> {
    const old = previous === undefined ? undefined : this.readTicket(previous);
    const ticket = old ?? { id: randomBytes(ID_BYTES).toString('base64url'), key: randomBytes(KEY_BYTES), stale: false };
    const key = this.sessionKey(ticket.id);
    const body = sealBody(ticket.key, key, Buffer.from(JSON.stringify(record), 'utf8'));
    if (old) {
      const written = await this.run(() => this.client.set(key, body, 'PX', this.ttlMs, 'XX'));
      if (written === null) {
        this.log.debug({}, 'redis session ended while being rewritten; not recreated');
        return previous!;
      }
      await this.index(key, record);
      if (!old.stale) return previous!;
    } else {
      await this.run(() => this.client.set(key, body, 'PX', this.ttlMs));
      await this.index(key, record);
    }
    return this.codec.seal(this.cookieName, { id: ticket.id, key: ticket.key.toString('base64url') });
  }

  async remove(cookieValue: string): Promise<void> {
    const ticket = this.readTicket(cookieValue);
    if (!ticket) return;
    const key = this.sessionKey(ticket.id);
    // The body names the index entries to clean (sub, IdP sid); one that no longer opens leaves
    // stale members behind, which every reader of the index tolerates.
    const body = await this.run(() => this.client.getBuffer(key));
    const record = body === null ? undefined : openBody(ticket.key, key, body);
    await this.run(() => this.client.del(key));
    if (isRecord(record)) await this.unindex(key.slice(this.keyPrefix.length), record.claims.sub as string, idpSidOf(record), record.provider);
  }

  // ---- The index: who has which sessions. Redis cannot read a session body (its key is only in
  // ---- the cookie), so each write also records, in the clear, what an operator needs to find and
  // ---- end a user's sessions — never a token or the cookie's id:
  // ----   <prefix>idx:sub:hex(sha256(sub))  hash  hex(sha256(id)) → JSON { createdAt, seenAt, idpSid? }
  // ----   <prefix>idx:sid:hex(sha256(sid))  hash  hex(sha256(id)) → sub
  // ---- Each index key expires with the latest session written to it (its TTL is reset to the
  // ---- session TTL on every write, which is never shorter than any member's own). Members whose
  // ---- session is gone (expired, removed elsewhere) are stale: skipped by readers and pruned.
  // ---- Separate commands, not MULTI: in Redis Cluster the keys live in different slots.

  // Key names carry a hash of the subject / IdP sid, never the name itself: listing Redis's keys
  // shows no user (the values are what an operator needs to list and end sessions).
  // A subject or IdP sid is the provider's name: hashed with the provider's scope (idpNameKey), so two
  // IdPs' "alice" have two index entries; the first provider's are the keys written before providers.
  private readonly firstProvider: string;
  // The scope is in the key's name (`idx:sub@partners:<hash>`), not in the hashed text: a subject of
  // the first provider may hold any character (Keycloak's federated `f:<idp>:<user>`), so no text
  // prefix could keep it from hashing like another provider's scoped name.
  private subIndexKey(sub: string, provider?: string): string { return this.indexKey('sub', sub, provider); }
  private sidIndexKey(sid: string, provider?: string): string { return this.indexKey('sid', sid, provider); }
  private indexKey(kind: 'sub' | 'sid', name: string, provider: string | undefined): string {
    const scope = idpNameKey(kind, '', provider, this.firstProvider); // `sub:` or `sub@partners:`
    return `${this.keyPrefix}idx:${scope}${createHash('sha256').update(name).digest('hex')}`;
  }

  private async index(key: string, record: SessionRecord): Promise<void> {
    const hex = key.slice(this.keyPrefix.length);
    const sub = record.claims.sub as string;
    const idpSid = idpSidOf(record);
    const provider = record.provider;
    const entry: IndexEntry = { createdAt: record.createdAt, seenAt: record.seenAt, ...(idpSid !== undefined ? { idpSid } : {}) };
    await this.run(async () => {
      const subKey = this.subIndexKey(sub, provider);
      const writes: Array<Promise<unknown>> = [this.client.hset(subKey, hex, JSON.stringify(entry)), this.client.pexpire(subKey, this.ttlMs)];
      if (idpSid !== undefined) {
        const sidKey = this.sidIndexKey(idpSid, provider);
        writes.push(this.client.hset(sidKey, hex, sub), this.client.pexpire(sidKey, this.ttlMs));
      }
      await Promise.all(writes);
    });
  }

  private async unindex(hex: string, sub: string, idpSid: string | undefined, provider: string | undefined): Promise<void> {
    await this.run(() => Promise.all([
      this.client.hdel(this.subIndexKey(sub, provider), hex),
      ...(idpSid !== undefined ? [this.client.hdel(this.sidIndexKey(idpSid, provider), hex)] : []),
    ]));
  }

  /** The live sessions of a subject, oldest first (what the index recorded at their last write; stale members are pruned). */
  async listBySub(sub: string, provider?: string): Promise<IndexedSession[]> {
    const subKey = this.subIndexKey(sub, provider);
    const raw = await this.run(() => this.client.hgetall(subKey));
    const hexes = Object.keys(raw);
    const alive = await this.run(() => Promise.all(hexes.map((h) => this.client.exists(this.keyPrefix + h))));
    const out: IndexedSession[] = [];
    const stale: string[] = [];
    hexes.forEach((hex, i) => {
      const e = parseEntry(raw[hex]!);
      if (!alive[i] || !e) { stale.push(hex); return; }
      out.push({ id: hex, sub, ...e });
    });
    if (stale.length) await this.run(() => this.client.hdel(subKey, ...stale));
    return out.sort((a, b) => a.createdAt - b.createdAt);
  }

  /** Deletes every session of a subject and its index entries; resolves to how many sessions were deleted. */
  async removeBySub(sub: string, provider?: string): Promise<number> {
    const subKey = this.subIndexKey(sub, provider);
    const raw = await this.run(() => this.client.hgetall(subKey));
    const hexes = Object.keys(raw);
    const deleted = await this.run(() => Promise.all(hexes.map((h) => this.client.del(this.keyPrefix + h))));
    const sids = new Set(Object.values(raw).map((v) => parseEntry(v)?.idpSid).filter((s): s is string => s !== undefined));
    await this.run(() => Promise.all([
      this.client.del(subKey),
      ...[...sids].map((sid) => this.client.hdel(this.sidIndexKey(sid, provider), ...hexes)),
    ]));
    return deleted.reduce((n, d) => n + d, 0);
  }

  /** Deletes every session of an IdP session id and its index entries; resolves to how many sessions were deleted. */
  async removeBySid(sid: string, provider?: string): Promise<number> {
    const sidKey = this.sidIndexKey(sid, provider);
    const raw = await this.run(() => this.client.hgetall(sidKey));
    const hexes = Object.keys(raw);
    const deleted = await this.run(() => Promise.all(hexes.map((h) => this.client.del(this.keyPrefix + h))));
    await this.run(() => Promise.all([
      this.client.del(sidKey),
      ...hexes.map((h) => this.client.hdel(this.subIndexKey(raw[h]!, provider), h)),
    ]));
    return deleted.reduce((n, d) => n + d, 0);
  }

  /** What a revocation names, deleted: `sid` when given (as the revocation list does), else `sub`; a lone `psid` is the sign-out's own remove(). */
  async removeSessions(r: { sid?: string; sub?: string; provider?: string }): Promise<number> {
    if (r.sid !== undefined) return this.removeBySid(r.sid, r.provider);
    if (r.sub !== undefined) return this.removeBySub(r.sub, r.provider);
    return 0;
  }

  /** Connected — and, for Redis Cluster, the cluster did not last report uncovered slots. */
  healthy(): boolean {
    return this.client.status === 'ready' && this.clusterState !== 'fail';
  }

  async close(): Promise<void> {
    this.client.off('error', this.onError);
    this.client.off('ready', this.onReady);
    if (this.clusterProbe) clearInterval(this.clusterProbe);
    this.client.off('node error', this.onNodeError);
    if (!this.ownsClient) return;
    const client = this.client;
    if (client.status === 'end') return;
    // A failing QUIT must not leave an error event without a listener.
    client.on('error', () => {});
    const ended = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CONNECT_TIMEOUT_MS);
      client.once('end', () => { clearTimeout(timer); resolve(); });
    });
    if (client.status === 'ready') await client.quit().catch(() => {});
    // (statusOf: QUIT changed it, and a call keeps TypeScript from narrowing on the check above)
    const status = statusOf(client);
    if (status === 'end') return;
    client.disconnect();
    // Between reconnect attempts there is no socket to close and no 'end' to wait for:
    // disconnect() has cancelled the next attempt, which is all there is to do.
    if (status !== 'reconnecting') await ended;
  }

  // ---- Primitives for other session features (refresh locks, logout-token replay checks). Keys are
  // ---- prefixed with keyPrefix; use a namespace with a colon (`lock:…`, `jti:…`) — session keys are
  // ---- 64 hex digits and never contain one.

  /** SET NX PX: true when this call created the key (it did not exist), false when it already existed. */
  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    const px = Math.max(1, Math.ceil(ttlMs));
    return (await this.run(() => this.client.set(this.keyPrefix + key, value, 'PX', px, 'NX'))) === 'OK';
  }

  async exists(key: string): Promise<boolean> {
    return (await this.run(() => this.client.exists(this.keyPrefix + key))) > 0;
  }

  /**
   * Deletes the key only while it still holds `value` (compare-and-delete in one script): a lock
   * owner releases its own lock, never one another replica took after this one's expired.
   */
  async delIfEquals(key: string, value: string): Promise<boolean> {
    const script = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
    return Number(await this.run(() => this.client.eval(script, 1, this.keyPrefix + key, value))) > 0;
  }

  /** True when the key existed. */
  async del(key: string): Promise<boolean> {
    return (await this.run(() => this.client.del(this.keyPrefix + key))) > 0;
  }

  private sessionKey(id: string): string {
    return this.keyPrefix + createHash('sha256').update(id).digest('hex');
  }

  private readTicket(cookieValue: string): Ticket | undefined {
    const opened = this.codec.open<{ id?: unknown; key?: unknown }>(this.cookieName, cookieValue);
    const t = opened?.value;
    // A cookie-store record sealed under the same name (after switching stores) fails here, too.
    if (!t || typeof t !== 'object' || typeof t.id !== 'string' || typeof t.key !== 'string') return undefined;
    if (!B64URL_32.test(t.id) || !B64URL_32.test(t.key)) return undefined;
    return { id: t.id, key: Buffer.from(t.key, 'base64url'), stale: opened!.stale };
  }

  /** Fails fast while disconnected (even with a caller's client that would queue) and wraps every Redis failure once. */
  private async run<T>(command: () => Promise<T>): Promise<T> {
    if (this.client.status !== 'ready') throw errors.storeUnavailable(new Error(`redis connection is ${this.client.status}`));
    try {
      return await command();
    } catch (err) {
      throw errors.storeUnavailable(err);
    }
  }
}

/** What the index keeps about a session (in the clear): no token, no cookie id. */
export interface IndexEntry {
  createdAt: number;
  /** As of the session's last write (the session manager rewrites at most once a minute). */
  seenAt: number;
  /** The IdP's session id (`sid` claim), when it sent one. */
  idpSid?: string;
}

export interface IndexedSession extends IndexEntry {
  /** The session's Redis key without the prefix: hex(sha256(cookie id)) — names it, opens nothing. */
  id: string;
  sub: string;
}

function idpSidOf(record: SessionRecord): string | undefined {
  return typeof record.claims.sid === 'string' ? record.claims.sid : undefined;
}

function parseEntry(v: string): IndexEntry | undefined {
  try {
    const e = JSON.parse(v) as IndexEntry;
    if (typeof e?.createdAt !== 'number' || typeof e.seenAt !== 'number') return undefined;
    return { createdAt: e.createdAt, seenAt: e.seenAt, ...(typeof e.idpSid === 'string' ? { idpSid: e.idpSid } : {}) };
  } catch {
    return undefined;
  }
}

function statusOf(client: RedisClient): string {
  return client.status;
}

function sealBody(key: Buffer, redisKey: string, plaintext: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(redisKey, 'utf8'));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.of(BODY_VERSION), iv, ct, cipher.getAuthTag()]);
}

function openBody(key: Buffer, redisKey: string, body: Buffer): unknown {
  if (body.length < 1 + IV_BYTES + TAG_BYTES || body[0] !== BODY_VERSION) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(1, 1 + IV_BYTES));
    decipher.setAAD(Buffer.from(redisKey, 'utf8'));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    const pt = Buffer.concat([decipher.update(body.subarray(1 + IV_BYTES, body.length - TAG_BYTES)), decipher.final()]);
    return JSON.parse(pt.toString('utf8'));
  } catch {
    return undefined;
  }
}

// ---- Connecting ----

/** What a `session.redis.url` asks for. */
export type RedisTarget =
  | { mode: 'standalone'; options: RedisOptions }
  | { mode: 'sentinel'; options: RedisOptions }
  | { mode: 'cluster'; nodes: ClusterNode[]; options: RedisOptions };

const URL_PARAMS = new Set(['sentinel', 'sentinelPassword', 'cluster']);

/**
 * Parses `session.redis.url`. Throws an Error naming the problem (never echoing a password).
 *
 * - `redis://[[user]:password@]host[:port][/db]` — one server; `rediss://` for TLS.
 * - Sentinel: `redis://[[user]:password@]sentinel1:26379,sentinel2:26379[/db]?sentinel=mymaster`
 *   — the hosts are the sentinels (default port 26379), `sentinel` names the monitored master,
 *   the userinfo authenticates to the master, `sentinelPassword=…` to the sentinels if they need
 *   one. `rediss://` uses TLS to the sentinels and the master. (`redis+sentinel://` is not a
 *   scheme ioredis knows, and the config accepts only redis:// and rediss://, hence the parameter.)
 * - Cluster: `redis://[[user]:password@]node1:6379,node2:6379?cluster=true` — seed nodes; the rest
 *   of the cluster is discovered. No `/db` (Redis Cluster has only database 0).
 *
 * Anything else (other parameters, TLS client certificates, NAT maps) needs an ioredis client
 * built by hand and passed as `RedisStoreOptions.client`.
 */
export function parseRedisUrl(url: string): RedisTarget {
  const m = /^(rediss?):\/\/(?:([^@/?#]*)@)?([^/?#]*)(?:\/([^?#]*))?(?:\?([^#]*))?$/i.exec(url);
  if (!m) throw new Error('redis url must look like redis://[user:password@]host[:port][/db][?…] (or rediss://)');
  const tls = m[1]!.toLowerCase() === 'rediss';
  const params = new URLSearchParams(m[5] ?? '');
  for (const name of params.keys()) if (!URL_PARAMS.has(name)) throw new Error(`redis url: unknown parameter "${name}" (known: ${[...URL_PARAMS].join(', ')})`);
  const sentinel = params.get('sentinel') ?? undefined;
  const cluster = params.get('cluster');
  if (cluster !== null && cluster !== 'true' && cluster !== 'false') throw new Error('redis url: cluster must be true or false');
  const isCluster = cluster === 'true';
  if (sentinel !== undefined && isCluster) throw new Error('redis url: sentinel and cluster cannot be combined');
  if (sentinel === '') throw new Error('redis url: sentinel needs the master name, e.g. ?sentinel=mymaster');

  const options: RedisOptions = {};
  if (m[2] !== undefined) {
    const colon = m[2].indexOf(':');
    const user = decode(colon === -1 ? m[2] : m[2].slice(0, colon), 'username');
    const password = colon === -1 ? undefined : decode(m[2].slice(colon + 1), 'password');
    if (user) options.username = user;
    if (password) options.password = password;
  }
  const path = m[4] ?? '';
  if (path !== '') {
    if (!/^\d+$/.test(path)) throw new Error('redis url: the path must be a database number, e.g. /0');
    if (isCluster && Number(path) !== 0) throw new Error('redis url: Redis Cluster has only database 0');
    options.db = Number(path);
  }
  const hosts = m[3]!.split(',').map((h) => parseHostPort(h, sentinel !== undefined ? 26379 : 6379));
  if (tls) options.tls = {};

  if (sentinel !== undefined) {
    options.sentinels = hosts;
    options.name = sentinel;
    const sp = params.get('sentinelPassword');
    if (sp) options.sentinelPassword = sp;
    if (tls) {
      options.enableTLSForSentinelMode = true;
      options.sentinelTLS = {};
    }
    return { mode: 'sentinel', options };
  }
  if (params.has('sentinelPassword')) throw new Error('redis url: sentinelPassword needs sentinel=<master name>');
  if (isCluster) return { mode: 'cluster', nodes: hosts, options };
  if (hosts.length !== 1) throw new Error('redis url: several hosts need ?sentinel=<master name> or ?cluster=true');
  const host = hosts[0]!;
  // Node's tls.connect sends no SNI unless told; TLS proxies in front of managed Redis route by it.
  if (tls && !isIP(host.host)) options.tls = { servername: host.host };
  return { mode: 'standalone', options: { ...options, ...host } };
}

/**
 * An ioredis client for `url` (see parseRedisUrl), tuned to fail fast and heal by itself:
 * connects at once, never queues commands while disconnected, times out each command, and
 * reconnects forever with capped backoff. `overrides` are merged into the per-connection options.
 */
export function createRedisClient(url: string, overrides: RedisOptions = {}): RedisClient {
  const target = parseRedisUrl(url);
  const perConnection: RedisOptions = {
    lazyConnect: false,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    maxRetriesPerRequest: 1,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    retryStrategy: reconnectDelay,
    sentinelRetryStrategy: reconnectDelay,
    ...target.options,
    ...overrides,
  };
  if (target.mode !== 'cluster') return new Redis(perConnection);
  const { retryStrategy: _r, enableOfflineQueue: _q, sentinels: _s, sentinelRetryStrategy: _sr, ...redisOptions } = perConnection;
  return new Cluster(target.nodes, {
    lazyConnect: false,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    clusterRetryStrategy: reconnectDelay,
    redisOptions,
  });
}

function reconnectDelay(attempt: number): number {
  return Math.min(100 * 2 ** Math.min(attempt, 5), MAX_RECONNECT_DELAY_MS) + Math.floor(Math.random() * 100);
}

function parseHostPort(s: string, defaultPort: number): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) throw new Error(`redis url: "${s}" is not host[:port]`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`redis url: port ${port} is out of range`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function decode(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new Error(`redis url: the ${what} is not valid percent-encoding`);
  }
}
