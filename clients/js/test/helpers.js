// Test helpers: a real gateway binary on 127.0.0.1, a TCP proxy that can
// freeze, drop and refuse connections (to make networks fail on purpose),
// and small waiting utilities.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * The gateway binary: $GATEWAY_BIN, else target/release/gateway (under
 * $CARGO_TARGET_DIR when set), else built with cargo.
 */
export function gatewayBin() {
  if (process.env.GATEWAY_BIN) return process.env.GATEWAY_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(REPO, 'target');
  const bin = join(target, 'release', 'gateway');
  if (existsSync(bin)) return bin;
  console.error(`# building ${bin} (cargo build --release -p gateway)`);
  const r = spawnSync('cargo', ['build', '--release', '-p', 'gateway'], { cwd: REPO, stdio: 'inherit' });
  if (r.status !== 0 || !existsSync(bin)) throw new Error('could not build the gateway');
  return bin;
}

/**
 * Config used by the tests: a short heartbeat so idle closes would show,
 * and a short drain (SIGTERM drains since issue 20: notice, then 1001s
 * spread over the window) so that stops stay quick.
 */
export const TEST_CONFIG = `heartbeat_ms = 1000\npresence_debounce_ms = 300\nshutdown_grace_ms = 1000\ndrain_notice_ms = 0\ndrain_window_ms = 200\n`;

/**
 * Starts a gateway. Options: `listen` (default 127.0.0.1:0), `dataDir`
 * (default: a new temp dir), `config` (TOML text), `args`, `env`.
 */
export async function startGateway(options = {}) {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'chatgw-js-'));
  const configPath = join(dataDir, '..', `${dataDir.split('/').pop()}.toml`);
  writeFileSync(configPath, options.config ?? TEST_CONFIG);
  const args = [
    '--listen', options.listen ?? '127.0.0.1:0',
    '--data-dir', dataDir,
    '--shards', '2',
    '--config', configPath,
    '--skip-preflight',
    ...(options.args ?? []),
  ];
  const proc = spawn(gatewayBin(), args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn', ...(options.env ?? {}) },
  });
  let stderr = '';
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  const lines = createInterface({ input: proc.stdout });
  const first = await new Promise((resolveLine, reject) => {
    lines.once('line', resolveLine);
    proc.once('exit', (code) => reject(new Error(`gateway exited with ${code}: ${stderr}`)));
  });
  const addr = /ws:\/\/([^/]+)\/ws/.exec(first)?.[1];
  if (!addr) throw new Error(`unexpected first line: ${first}`);
  const exited = new Promise((r) => proc.once('exit', r));
  return {
    addr,
    port: Number(addr.split(':')[1]),
    url: `ws://${addr}/ws`,
    http: `http://${addr}`,
    dataDir,
    proc,
    /** SIGTERM (graceful: 1001 to every client) and wait for the exit. */
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
    cleanup() {
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(configPath, { force: true });
    },
  };
}

/** A TCP proxy in front of a gateway that breaks the network on demand. */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    /** Answer WebSocket upgrades with 403 (a network that blocks WebSocket). */
    this.blockWebSocket = false;
    /** Close every new connection at once (server unreachable). */
    this.refuse = false;
    /** Drop server → client bytes of WebSocket connections (acks get lost). */
    this.freezeDown = false;
    /** Drop client → server bytes of WebSocket connections (sends get lost). */
    this.freezeUp = false;
    this.connections = 0;
  }

  async listen() {
    this.server = net.createServer((client) => this.#accept(client));
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
    this.addr = `127.0.0.1:${this.port}`;
    this.url = `ws://${this.addr}/ws`;
    this.http = `http://${this.addr}`;
    return this;
  }

  #accept(client) {
    if (this.refuse) {
      client.destroy();
      return;
    }
    this.connections++;
    const pair = { client, upstream: null, ws: false, frozen: false };
    this.pairs.add(pair);
    client.once('data', (first) => {
      const head = first.toString('latin1');
      pair.ws = /^upgrade:\s*websocket/im.test(head);
      if (pair.ws && this.blockWebSocket) {
        client.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        this.pairs.delete(pair);
        return;
      }
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      pair.upstream = upstream;
      upstream.write(first);
      client.on('data', (d) => {
        if (!(pair.ws && (this.freezeUp || pair.frozenUp))) upstream.write(d);
      });
      upstream.on('data', (d) => {
        if (!(pair.ws && (this.freezeDown || pair.frozenDown))) client.write(d);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      upstream.on('error', end).on('close', end);
      client.on('error', end).on('close', end);
    });
    client.on('error', () => client.destroy());
  }

  /**
   * Drops the bytes of the WebSocket connections open now in one direction
   * or both (`up`: client to server, `down`: server to client); later
   * connections are not affected.
   */
  freezeOpen({ up = false, down = false }) {
    for (const p of this.pairs) {
      if (!p.ws) continue;
      p.frozenUp ||= up;
      p.frozenDown ||= down;
    }
  }

  /** Cuts every open connection (both sides see a reset / EOF). */
  dropAll() {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream?.destroy();
    }
    this.pairs.clear();
  }

  close() {
    this.dropAll();
    return new Promise((r) => this.server.close(r));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `pred` until it is truthy (returns its value) or fails after `ms`. */
export async function waitFor(pred, ms = 10_000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Resolves with the next event `type` of `client` (matching `pred`). */
export function nextEvent(client, type, pred = () => true, ms = 10_000) {
  return new Promise((resolveEv, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${type}`));
    }, ms);
    const off = client.on(type, (ev) => {
      if (!pred(ev)) return;
      clearTimeout(timer);
      off();
      resolveEv(ev);
    });
  });
}

/** Records every `message` event per channel. */
export function recorder(client) {
  const byChannel = new Map();
  client.on('message', (m) => {
    if (!byChannel.has(m.channel)) byChannel.set(m.channel, []);
    byChannel.get(m.channel).push(m);
  });
  return {
    of: (channel) => byChannel.get(channel) ?? [],
    seqs: (channel) => (byChannel.get(channel) ?? []).map((m) => m.seq),
    texts: (channel) => (byChannel.get(channel) ?? []).map((m) => m.text),
  };
}

/** An HS256 token as the gateway signs them. */
export function signToken(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = createHmac('sha256', secret).update(body).digest('base64url');
  return `${body}.${sig}`;
}

/** Plain HTTP call to the gateway (dev auth in the query). */
export async function api(base, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
