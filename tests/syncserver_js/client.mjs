// A driver for real automerge-repo clients, used by tests/syncserver and bench/syncserver.py.
//
// Reads one JSON command per line on stdin, writes one JSON reply per line on
// stdout ({"id", "ok": true, ...} or {"id", "ok": false, "error"}), plus
// unsolicited {"event": ...} lines. Several named clients (each its own Repo
// with its own WebSocket) live in one process.
import { Repo, cbor, generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import * as A from "@automerge/automerge"
import readline from "node:readline"
import WebSocket from "ws"

const clients = new Map() // name -> { repo, adapter, serverPeer }
const handles = new Map() // `${client} ${docUrl}` -> handle
const ephemeral = new Map() // `${client} ${docUrl}` -> [messages]

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n")
}

function client(name) {
  const c = clients.get(name)
  if (!c) throw new Error(`no client ${name}`)
  return c
}

function until(check, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const start = Date.now()
    const tick = () => {
      let value
      try {
        value = check()
      } catch (e) {
        reject(e)
        return
      }
      if (value) resolve(value)
      else if (Date.now() - start > timeoutMs) reject(new Error(`timed out waiting for ${what}`))
      else setTimeout(tick, 5)
    }
    tick()
  })
}

function sameHeads(a, b) {
  if (!a || !b || a.length !== b.length) return false
  const x = [...a].sort()
  const y = [...b].sort()
  return x.every((h, i) => h === y[i])
}

function serverStorageId(c) {
  return c.serverPeer ? c.repo.getStorageIdOfPeer(c.serverPeer) : undefined
}

// Resolves once the server has acknowledged every head of `handle`.
function acked(c, handle) {
  return new Promise(resolve => {
    const check = () => {
      const sid = serverStorageId(c)
      if (sid && sameHeads(handle.getSyncInfo(sid)?.lastHeads, handle.heads())) {
        handle.off("remote-heads", check)
        resolve()
      }
    }
    handle.on("remote-heads", check)
    check()
  })
}

const prepared = new Map() // tag -> [saved document binaries]

async function getHandle(c, name, url) {
  const key = `${name} ${url}`
  let h = handles.get(key)
  if (!h) {
    h = await c.repo.find(url)
    handles.set(key, h)
    listenEphemeral(name, url, h)
  }
  return h
}

function listenEphemeral(name, url, handle) {
  const key = `${name} ${url}`
  if (!ephemeral.has(key)) {
    ephemeral.set(key, [])
    handle.on("ephemeral-message", ({ message, senderId }) => {
      ephemeral.get(key).push({ message, senderId })
    })
  }
}

function makeChanges(handle, n, tag) {
  for (let i = 0; i < n; i++) {
    handle.change(d => {
      if (!d.items) d.items = []
      d.items.push(`${tag}-${i}`)
    })
  }
}

const commands = {
  async open({ client: name, url, timeoutMs = 10000, storageId }) {
    const adapter = new WebSocketClientAdapter(url, 500)
    const repo = new Repo({ network: [adapter], isEphemeral: false })
    const c = { repo, adapter, serverPeer: undefined }
    clients.set(name, c)
    repo.networkSubsystem.on("peer", ({ peerId }) => {
      c.serverPeer = peerId
    })
    repo.networkSubsystem.on("peer-disconnected", ({ peerId }) => {
      if (c.serverPeer === peerId) c.serverPeer = undefined
    })
    await until(() => c.serverPeer, timeoutMs, "the server's peer message")
    return { serverPeerId: c.serverPeer, serverStorageId: serverStorageId(c), peerId: repo.peerId }
  },

  // A new document of `changes` changes. `bulk` builds them with plain Automerge
  // (a handle's change() costs milliseconds each) and imports the result.
  async create({ client: name, changes = 1, tag = "c", bulk = false }) {
    const c = client(name)
    let handle
    if (bulk) {
      let doc = A.from({ items: [], n: 0 })
      for (let i = 1; i < changes; i++) {
        doc = A.change(doc, d => {
          d.n = i
        })
      }
      handle = c.repo.import(A.save(doc))
    } else {
      handle = c.repo.create({ items: [] })
      makeChanges(handle, changes - 1, tag)
    }
    handles.set(`${name} ${handle.url}`, handle)
    listenEphemeral(name, handle.url, handle)
    return { url: handle.url, documentId: handle.documentId, heads: handle.heads() }
  },

  async change({ client: name, url, changes = 1, tag = "x" }) {
    const c = client(name)
    const handle = await getHandle(c, name, url)
    makeChanges(handle, changes, tag)
    return { heads: handle.heads() }
  },

  // Waits until the server's heads (as it advertised them to us) equal ours.
  async waitSynced({ client: name, url, timeoutMs = 30000 }) {
    const c = client(name)
    const handle = await getHandle(c, name, url)
    await until(
      () => {
        const sid = serverStorageId(c)
        return sid && sameHeads(handle.getSyncInfo(sid)?.lastHeads, handle.heads())
      },
      timeoutMs,
      "the server to acknowledge our heads",
    )
    return { heads: handle.heads() }
  },

  async find({ client: name, url, timeoutMs = 20000 }) {
    const c = client(name)
    const key = `${name} ${url}`
    try {
      const handle = await Promise.race([
        c.repo.find(url),
        new Promise((_, reject) => setTimeout(() => reject(new Error("find timed out")), timeoutMs)),
      ])
      handles.set(key, handle)
      listenEphemeral(name, url, handle)
      const doc = handle.doc()
      return { available: true, heads: handle.heads(), items: doc.items ?? [], n: doc.n }
    } catch (e) {
      if (String(e.message).includes("unavailable")) return { available: false }
      throw e
    }
  },

  // Like find, but keeps the handle when the document is unavailable, so it can
  // become ready later if the server starts syncing it.
  async findOrWait({ client: name, url }) {
    const c = client(name)
    const handle = await c.repo.find(url, { allowableStates: ["ready", "unavailable"] })
    handles.set(`${name} ${url}`, handle)
    return { state: handle.state }
  },

  async waitReady({ client: name, url, timeoutMs = 30000 }) {
    const handle = handles.get(`${name} ${url}`)
    await until(() => handle.isReady(), timeoutMs, "the document to become ready")
    return { heads: handle.heads(), items: handle.doc().items ?? [] }
  },

  async value({ client: name, url }) {
    const c = client(name)
    const handle = await getHandle(c, name, url)
    return { heads: handle.heads(), items: handle.doc().items ?? [] }
  },

  // Waits until our copy has at least `count` items (changes from others arrived).
  async waitItems({ client: name, url, count, timeoutMs = 30000 }) {
    const c = client(name)
    const handle = await getHandle(c, name, url)
    await until(() => (handle.doc().items ?? []).length >= count, timeoutMs, `${count} items`)
    return { heads: handle.heads(), items: handle.doc().items }
  },

  async broadcast({ client: name, url, message }) {
    const c = client(name)
    const handle = await getHandle(c, name, url)
    handle.broadcast(message)
    return {}
  },

  async ephemeral({ client: name, url }) {
    return { received: ephemeral.get(`${name} ${url}`) ?? [] }
  },

  // Makes `changes` changes one at a time, yielding to the event loop between
  // them, and reports every head the server acknowledges as an event.
  async upload({ client: name, url, changes, tag = "u" }) {
    const c = client(name)
    const handle = await getHandle(c, name, url)
    handle.on("remote-heads", ({ storageId, heads }) => {
      if (storageId === serverStorageId(c)) out({ event: "acked", heads })
    })
    for (let i = 0; i < changes; i++) {
      makeChanges(handle, 1, `${tag}-${i}`)
      await new Promise(resolve => setTimeout(resolve, 0))
    }
    return { heads: handle.heads() }
  },

  // Bytes on the wire (WebSocket frames included) of every open client's socket.
  async wire() {
    let sent = 0
    let received = 0
    for (const c of clients.values()) {
      const raw = c.adapter.socket?._socket
      if (raw) {
        sent += raw.bytesWritten
        received += raw.bytesRead
      }
    }
    return { sent, received }
  },

  // One client makes `changes` changes with a full sync round after each: it sends
  // the change and waits until the server acknowledges it. Plain Automerge sync over
  // the automerge-repo wire format, without the Repo's 100 ms sync throttle.
  async rounds({ url, changes }) {
    const ws = new WebSocket(url)
    ws.binaryType = "arraybuffer"
    const inbox = []
    let wake = null
    ws.on("message", data => {
      inbox.push(cbor.decode(new Uint8Array(data)))
      if (wake) wake()
    })
    let i = 0
    const next = () =>
      inbox.length
        ? Promise.resolve(inbox.shift())
        : new Promise((resolve, reject) => {
            const timer = setTimeout(
              () => reject(new Error(`no reply in round ${i} (${messages} received)`)),
              60000,
            )
            wake = () => {
              wake = null
              clearTimeout(timer)
              resolve(inbox.shift())
            }
          })
    await new Promise((resolve, reject) => {
      ws.once("open", resolve)
      ws.once("error", reject)
    })
    const peerId = `bench-${Math.random().toString(36).slice(2)}`
    const send = msg => ws.send(cbor.encode(msg))
    send({ type: "join", senderId: peerId, peerMetadata: { isEphemeral: true }, supportedProtocolVersions: ["1"] })
    const peer = await next()
    if (peer.type !== "peer") throw new Error(`expected peer, got ${peer.type}`)
    const documentId = parseAutomergeUrl(generateAutomergeUrl()).documentId
    const base = { senderId: peerId, targetId: peer.senderId, documentId }
    let doc = A.init()
    let state = A.initSyncState()
    let messages = 0
    for (i = 0; i < changes; i++) {
      doc = A.change(doc, d => {
        d.n = i
      })
      let msg
      ;[state, msg] = A.generateSyncMessage(doc, state)
      if (msg) send({ type: "sync", ...base, data: msg })
      const heads = A.getHeads(doc)
      while (!sameHeads(state.theirHeads, heads)) {
        const m = await next()
        if (m.type !== "sync") throw new Error(`unexpected ${m.type}: ${m.message ?? ""}`)
        messages++
        ;[doc, state] = A.receiveSyncMessage(doc, state, m.data)
        ;[state, msg] = A.generateSyncMessage(doc, state)
        if (msg) send({ type: "sync", ...base, data: msg })
      }
    }
    const raw = ws._socket
    const wire = { sent: raw.bytesWritten, received: raw.bytesRead }
    ws.close()
    return { url: `automerge:${documentId}`, documentId, received: messages, wire }
  },

  // Builds `count` documents of `changes` changes each (not timed by the bench).
  async prepareMany({ tag, count, changes }) {
    const docs = []
    for (let k = 0; k < count; k++) {
      let doc = A.from({ doc: `${tag}-${k}`, n: 0 })
      for (let i = 1; i < changes; i++) {
        doc = A.change(doc, d => {
          d.n = i
        })
      }
      docs.push(A.save(doc))
    }
    prepared.set(tag, docs)
    return { count: docs.length }
  },

  // Imports prepared documents as new documents and waits until the server has them all.
  async uploadMany({ client: name, tag, timeoutMs = 600000 }) {
    const c = client(name)
    const handles = prepared.get(tag).map(binary => c.repo.import(binary))
    await Promise.race([
      Promise.all(handles.map(h => acked(c, h))),
      new Promise((_, reject) => setTimeout(() => reject(new Error("uploadMany timed out")), timeoutMs)),
    ])
    return { count: handles.length }
  },

  async close({ client: name }) {
    const c = client(name)
    clients.delete(name)
    try {
      await c.repo.shutdown()
    } catch (e) {
      // A socket caught mid-reconnect refuses to close cleanly; it is gone either way.
      out({ event: "close-error", client: name, error: String(e) })
    }
    return {}
  },
}

// A client socket closed while (re)connecting emits an 'error' nobody listens to;
// report it instead of letting it end the driver and every other client with it.
process.on("uncaughtException", e => out({ event: "uncaught", error: String(e && e.stack ? e.stack : e) }))

const rl = readline.createInterface({ input: process.stdin })
rl.on("line", async line => {
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (e) {
    out({ ok: false, error: `bad command: ${e}` })
    return
  }
  const fn = commands[cmd.op]
  if (!fn) {
    out({ id: cmd.id, ok: false, error: `unknown op ${cmd.op}` })
    return
  }
  try {
    const result = await fn(cmd)
    out({ id: cmd.id, ok: true, ...result })
  } catch (e) {
    out({ id: cmd.id, ok: false, error: String(e && e.stack ? e.stack : e) })
  }
})
rl.on("close", () => process.exit(0))
out({ event: "ready" })
