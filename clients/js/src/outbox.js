// The durable outbox: every send, edit and delete is stored here before it
// is written to the network, and removed only once the gateway acked it
// (or refused it for good). After a reconnect or a page reload the client
// resends exactly what is left, in the order it was stored, with the same
// client_msg_id, so the gateway stores each message once.
//
// A store is anything with these three methods (keys are increasing
// numbers; `list` is in key order):
//
//   add(entry)  -> Promise<key>   durable when the promise resolves
//   remove(key) -> Promise<void>
//   list()      -> Promise<Array<entry & {key}>>
//
// Two come with the SDK: MemoryOutboxStore (the default in Node: survives
// reconnects, not the process) and IndexedDBOutboxStore (the default in
// browsers: survives reloads and crashes of the page).

/** An outbox in memory. Share one instance between clients to simulate a reload. */
export class MemoryOutboxStore {
  #entries = new Map();
  #next = 1;

  async add(entry) {
    const key = this.#next++;
    this.#entries.set(key, structuredClone({ ...entry, key }));
    return key;
  }

  async remove(key) {
    this.#entries.delete(key);
  }

  async list() {
    return [...this.#entries.values()].map((e) => structuredClone(e));
  }
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** An outbox in IndexedDB (one database per name: use one per user and device). */
export class IndexedDBOutboxStore {
  #db = null;

  /**
   * @param {string} name e.g. `${user}:${device}`
   * @param {{indexedDB?: IDBFactory}} [options]
   */
  constructor(name, options = {}) {
    this.name = `chatgw-outbox:${name}`;
    this.idb = options.indexedDB ?? globalThis.indexedDB;
    if (!this.idb) throw new Error('IndexedDB is not available here');
  }

  #open() {
    if (!this.#db) {
      const req = this.idb.open(this.name, 1);
      req.onupgradeneeded = () => {
        req.result.createObjectStore('outbox', { keyPath: 'key', autoIncrement: true });
      };
      this.#db = request(req);
    }
    return this.#db;
  }

  async #tx(mode, durability, fn) {
    const db = await this.#open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction('outbox', mode, { durability });
      let result;
      const req = fn(tx.objectStore('outbox'));
      req.onsuccess = () => {
        result = req.result;
      };
      // Resolve on commit, not on the request: only then is it stored.
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
  }

  add(entry) {
    const { key: _ignored, ...rest } = entry;
    return this.#tx('readwrite', 'strict', (s) => s.add(rest));
  }

  async remove(key) {
    await this.#tx('readwrite', 'relaxed', (s) => s.delete(key));
  }

  list() {
    return this.#tx('readonly', 'default', (s) => s.getAll());
  }
}

/** The default store: IndexedDB in browsers, memory elsewhere. */
export function defaultOutboxStore(name) {
  if (globalThis.indexedDB) return new IndexedDBOutboxStore(name);
  return new MemoryOutboxStore();
}
