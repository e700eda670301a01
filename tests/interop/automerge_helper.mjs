// JSON-lines driver for @automerge/automerge, the oracle of the Python core's tests.
// One request per stdin line: {"op": ..., ...}; one reply per stdout line:
// {"ok": true, ...} or {"ok": false, "error": "..."}. Binary values are base64,
// hashes are lowercase hex (as Automerge.getHeads returns them).
import * as A from "@automerge/automerge"
import { createInterface } from "node:readline"

const docs = new Map()
const states = new Map()

const b64 = (u8) => Buffer.from(u8).toString("base64")
const unb64 = (s) => new Uint8Array(Buffer.from(s, "base64"))

function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const actorFor = (seed, i) =>
  (((seed * 131 + i * 7919) >>> 0).toString(16).padStart(8, "0") + "a1".repeat(12)).slice(0, 32)

const WORDS = ["hearth", "ember", "café", "日本語", "Ω≈ç√", "🔥🙂", "zeile", "نص", ""]

// One random edit touching maps, lists, text, counters, deletes, unicode and big values.
function edit(doc, rand, step, opts) {
  const pick = (xs) => xs[Math.floor(rand() * xs.length)]
  const message = rand() < 0.3 ? `step ${step} ${pick(WORDS)}` : undefined
  return A.change(doc, { message, time: 1700000000 + step }, (d) => {
    const r = rand()
    if (opts.big && step % 499 === 0) {
      d.map.big = `${step}:` + pick(WORDS).repeat(5000 + Math.floor(rand() * 10000))
    } else if (r < 0.2) {
      d.map[`k${Math.floor(rand() * 20)}`] = pick([pick(WORDS), rand() * 1e6, step, true, null])
    } else if (r < 0.3) {
      const keys = Object.keys(d.map)
      if (keys.length) delete d.map[pick(keys)]
      else d.map.fresh = step
    } else if (r < 0.45) {
      d.items.splice(Math.floor(rand() * (d.items.length + 1)), 0, { n: step, w: pick(WORDS) })
    } else if (r < 0.52) {
      if (d.items.length) d.items.splice(Math.floor(rand() * d.items.length), 1)
      else d.items.push(step)
    } else if (r < 0.8) {
      const len = d.text.length
      const pos = Math.floor(rand() * (len + 1))
      const del = rand() < 0.3 ? Math.min(3, len - pos) : 0
      A.splice(d, ["text"], pos, del, pick(WORDS) + " ")
    } else if (r < 0.93) {
      d.count.increment(Math.floor(rand() * 10) - 3)
    } else {
      d.title = `${pick(WORDS)} #${step}`
    }
  })
}

// A document built by `actors` replicas editing concurrently and merging now and then.
function generate({ seed = 1, changes = 200, actors = 3, big = true, merges = 0.08 }) {
  const rand = rng(seed)
  let base = A.from(
    { title: "", items: [], text: "", count: new A.Counter(0), map: {} },
    { actor: actorFor(seed, 0) },
  )
  const reps = [base]
  for (let i = 1; i < actors; i++) reps.push(A.clone(base, { actor: actorFor(seed, i) }))
  for (let step = 1; step < changes; step++) {
    const i = Math.floor(rand() * reps.length)
    if (rand() < merges && reps.length > 1) {
      const j = (i + 1 + Math.floor(rand() * (reps.length - 1))) % reps.length
      reps[i] = A.merge(reps[i], reps[j])
    }
    reps[i] = edit(reps[i], rand, step, { big })
  }
  let doc = reps[0]
  for (let i = 1; i < reps.length; i++) doc = A.merge(doc, reps[i])
  return doc
}

function docOut(doc) {
  return { heads: A.getHeads(doc), json: JSON.parse(JSON.stringify(doc)) }
}

function runSync(a, b, stateA) {
  let sa = stateA ? A.decodeSyncState(unb64(stateA)) : A.initSyncState()
  let sb = A.initSyncState()
  let messages = 0
  let bytes = 0
  const t0 = process.hrtime.bigint()
  const cpu0 = process.cpuUsage()
  for (let round = 0; round < 1000; round++) {
    let m1, m2
    ;[sa, m1] = A.generateSyncMessage(a, sa)
    if (m1) {
      messages++
      bytes += m1.length
      ;[b, sb] = A.receiveSyncMessage(b, sb, m1)
    }
    ;[sb, m2] = A.generateSyncMessage(b, sb)
    if (m2) {
      messages++
      bytes += m2.length
      ;[a, sa] = A.receiveSyncMessage(a, sa, m2)
    }
    if (!m1 && !m2) break
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  const cpu = process.cpuUsage(cpu0)
  return { a, b, messages, bytes, ms, cpu_ms: (cpu.user + cpu.system) / 1000 }
}

const ops = {
  generate(req) {
    const doc = generate(req)
    if (req.name) docs.set(req.name, doc)
    const changes = A.getAllChanges(doc)
    return {
      ...docOut(doc),
      changes: changes.map(b64),
      hashes: changes.map((c) => A.decodeChange(c).hash),
      save: b64(A.save(doc)),
    }
  },
  new(req) {
    const opts = req.actor ? { actor: req.actor } : undefined
    docs.set(req.name, req.data ? A.load(unb64(req.data), opts) : A.init(opts))
    return docOut(docs.get(req.name))
  },
  fork(req) {
    docs.set(req.name, A.clone(docs.get(req.from), req.actor ? { actor: req.actor } : undefined))
    return docOut(docs.get(req.name))
  },
  edit(req) {
    const rand = rng(req.seed ?? 7)
    let doc = docs.get(req.name)
    if (!doc.items) doc = A.change(doc, (d) => Object.assign(d, { title: "", items: [], text: "", count: new A.Counter(0), map: {} }))
    for (let i = 0; i < (req.count ?? 1); i++) doc = edit(doc, rand, (req.step ?? 100000) + i, { big: false })
    docs.set(req.name, doc)
    return docOut(doc)
  },
  doc(req) {
    const doc = docs.get(req.name)
    return { ...docOut(doc), save: b64(A.save(doc)), changes: A.getAllChanges(doc).map(b64) }
  },
  load(req) {
    const doc = A.load(unb64(req.data))
    if (req.name) docs.set(req.name, doc)
    return docOut(doc)
  },
  decode_change(req) {
    const c = A.decodeChange(unb64(req.data))
    return { hash: c.hash, deps: c.deps, actor: c.actor, seq: c.seq, startOp: c.startOp, time: c.time, message: c.message ?? null }
  },
  sync_state(req) {
    states.set(req.name, req.data ? A.decodeSyncState(unb64(req.data)) : A.initSyncState())
    return {}
  },
  encode_state(req) {
    return { data: b64(A.encodeSyncState(states.get(req.name))) }
  },
  generate_sync(req) {
    const [s, m] = A.generateSyncMessage(docs.get(req.doc), states.get(req.state))
    states.set(req.state, s)
    return { msg: m ? b64(m) : null }
  },
  receive_sync(req) {
    const [d, s] = A.receiveSyncMessage(docs.get(req.doc), states.get(req.state), unb64(req.msg))
    docs.set(req.doc, d)
    states.set(req.state, s)
    return { heads: A.getHeads(d) }
  },
  decode_sync(req) {
    const m = A.decodeSyncMessage(unb64(req.msg))
    return {
      heads: m.heads,
      need: m.need,
      have: m.have.map((h) => ({ lastSync: h.lastSync, bloom: b64(h.bloom) })),
      changes: m.changes.map(b64),
    }
  },
  js_sync(req) {
    const { a, b, messages, bytes, ms, cpu_ms } = runSync(docs.get(req.a), docs.get(req.b), req.state_a)
    docs.set(req.a, a)
    docs.set(req.b, b)
    return { messages, bytes, ms, cpu_ms, heads_a: A.getHeads(a), heads_b: A.getHeads(b) }
  },
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of rl) {
  if (!line.trim()) continue
  let reply
  try {
    const req = JSON.parse(line)
    reply = { ok: true, ...ops[req.op](req) }
  } catch (e) {
    reply = { ok: false, error: String(e && e.message ? e.message : e) }
  }
  process.stdout.write(JSON.stringify(reply) + "\n")
}
