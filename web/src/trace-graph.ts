// The fund-flow graph the investigator builds: a first trace, then one-hop expansions from any
// account, merged by transaction id. Each account and transaction gets a signed level (hops from
// the start: + where the money went, − where it came from) that lays the graph out left to right
// and turns it into a Sankey without cycles.
import type { TraceEdge, TraceNode, TraceRequest, TraceResult } from './types'

export const SINK_KINDS = ['cash', 'cross_border', 'other_bank', 'alerted'] as const

export interface GNode {
  id: string
  level: number
  bank: string | null
  roles: Set<string>
  flags: Set<string>
  tracedIn: number
  tracedOut: number
  dropped: number
  firstTs: string | null
  lastTs: string | null
  start: boolean
  expanded: { forward: boolean; backward: boolean }
}

export interface GEdge {
  txnId: string
  ts: string
  src: string
  dst: string
  amount: number
  traced: number
  /** Levels of payer and payee; payeeLevel = payerLevel + 1 always, which keeps the Sankey acyclic. */
  payerLevel: number
  payeeLevel: number
  channel: string | null
  sink: string | null
}

export interface FlowGraph {
  nodes: Map<string, GNode>
  edges: Map<string, GEdge>
}

export function emptyGraph(): FlowGraph {
  return { nodes: new Map(), edges: new Map() }
}

function flagsOf(n: TraceNode): string[] {
  if (!n.flags) return []
  if (Array.isArray(n.flags)) return n.flags
  return String(n.flags)
    .split(/[,;|\s]+/)
    .filter(Boolean)
}

/** "72h", "90m", "3d", "45s" or seconds → milliseconds. */
export function windowMs(w: string | number | undefined | null): number {
  if (w === undefined || w === null || w === '') return 72 * 3600_000
  if (typeof w === 'number') return w * 1000
  const m = /^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$/i.exec(w)
  if (!m) return 72 * 3600_000
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2].toLowerCase() as '' | 's' | 'm' | 'h' | 'd' | 'w']
  return Number(m[1]) * unit * 1000
}

/**
 * Merge one trace result into the graph. `fromLevel` is the level of the account the trace
 * started at; hop h of a forward trace lands at fromLevel + h, of a backward trace at fromLevel − h.
 * Returns how many transactions were new.
 */
export function merge(g: FlowGraph, res: TraceResult, direction: 'forward' | 'backward', fromLevel: number): number {
  let added = 0
  const levelOf = new Map<string, number>()
  for (const e of res.edges) {
    // forward hop h: payer at fromLevel+h−1, payee at fromLevel+h; backward: payee at fromLevel−h+1, payer at fromLevel−h
    const payee = direction === 'forward' ? fromLevel + e.hop : fromLevel - e.hop + 1
    if (!g.edges.has(e.txn_id)) {
      g.edges.set(e.txn_id, toEdge(e, payee - 1, payee))
      added++
    }
    const far = direction === 'forward' ? e.dst_account : e.src_account
    const farLevel = direction === 'forward' ? payee : payee - 1
    const prev = levelOf.get(far)
    if (prev === undefined || Math.abs(farLevel) < Math.abs(prev)) levelOf.set(far, farLevel)
  }
  const blank = (id: string, level: number): GNode => ({
    id,
    level,
    bank: null,
    roles: new Set(),
    flags: new Set(),
    tracedIn: 0,
    tracedOut: 0,
    dropped: 0,
    firstTs: null,
    lastTs: null,
    start: false,
    expanded: { forward: false, backward: false },
  })
  for (const n of res.nodes) {
    let node = g.nodes.get(n.account_id)
    if (!node) {
      node = blank(n.account_id, levelOf.get(n.account_id) ?? fromLevel)
      g.nodes.set(n.account_id, node)
    }
    for (const f of flagsOf(n)) node.flags.add(f)
    if (n.role) node.roles.add(n.role)
    node.bank = node.bank ?? n.bank
    node.dropped = Math.max(node.dropped, n.dropped ?? 0)
    node.firstTs = minTs(node.firstTs, n.first_ts)
    node.lastTs = maxTs(node.lastTs, n.last_ts)
  }
  // every edge end should be a node; be safe if one is not
  for (const e of res.edges) {
    for (const id of [e.src_account, e.dst_account]) {
      if (!g.nodes.has(id)) g.nodes.set(id, blank(id, levelOf.get(id) ?? fromLevel))
    }
  }
  recomputeTotals(g)
  return added
}

function toEdge(e: TraceEdge, payerLevel: number, payeeLevel: number): GEdge {
  return {
    txnId: e.txn_id,
    ts: e.ts,
    src: e.src_account,
    dst: e.dst_account,
    amount: e.amount,
    traced: e.traced ?? e.amount,
    payerLevel,
    payeeLevel,
    channel: e.channel,
    sink: e.sink || null,
  }
}

/** Signed hop of a transaction from the start: +h where money went on, −h where it came from. */
export function hopOf(e: GEdge): number {
  return e.payeeLevel > 0 ? e.payeeLevel : e.payerLevel
}

function minTs(a: string | null, b: string | null): string | null {
  if (!a) return b
  if (!b) return a
  return a < b ? a : b
}
function maxTs(a: string | null, b: string | null): string | null {
  if (!a) return b
  if (!b) return a
  return a > b ? a : b
}

/** Traced money in and out of every account, over the transactions in the graph. */
export function recomputeTotals(g: FlowGraph): void {
  for (const n of g.nodes.values()) {
    n.tracedIn = 0
    n.tracedOut = 0
  }
  for (const e of g.edges.values()) {
    const s = g.nodes.get(e.src)
    const d = g.nodes.get(e.dst)
    if (s) s.tracedOut += e.traced
    if (d) d.tracedIn += e.traced
  }
}

/** Sinks: where money left as cash, abroad, to another bank, or reached an alerted account. */
export function sinkKinds(g: FlowGraph, n: GNode): string[] {
  const kinds = new Set<string>()
  for (const f of n.flags) if ((SINK_KINDS as readonly string[]).includes(f)) kinds.add(f)
  for (const e of g.edges.values()) if (e.sink && (e.dst === n.id || e.src === n.id) && isSinkEnd(e, n.id)) kinds.add(e.sink)
  return [...kinds]
}

function isSinkEnd(e: GEdge, id: string): boolean {
  // forward: the payee is where the path ended; backward: the payer
  return e.payeeLevel > 0 ? e.dst === id : e.src === id
}

/**
 * The time range to trace a one-hop expansion from `node` over, so the hop follows the money
 * that is in the graph: forward, outflows after the first traced inflow and within the hop
 * window of the last; backward, inflows before the last traced outflow and within the window
 * of the first. Null when the account has no traced flow on that side (then the whole history).
 */
export function expansionRange(
  g: FlowGraph,
  id: string,
  direction: 'forward' | 'backward',
  hopWindow: string | undefined,
): { start_time: string; end_time: string } | null {
  const w = windowMs(hopWindow)
  const times: number[] = []
  for (const e of g.edges.values()) {
    if (direction === 'forward' && e.dst === id) times.push(new Date(e.ts).getTime())
    if (direction === 'backward' && e.src === id) times.push(new Date(e.ts).getTime())
  }
  if (!times.length) return null
  const lo = Math.min(...times)
  const hi = Math.max(...times)
  if (direction === 'forward') return { start_time: new Date(lo).toISOString(), end_time: new Date(hi + w).toISOString() }
  return { start_time: new Date(lo - w).toISOString(), end_time: new Date(hi).toISOString() }
}

export interface ViewFilter {
  fromMs: number
  toMs: number
  minAmount: number
}

export function visibleEdges(g: FlowGraph, f: ViewFilter): GEdge[] {
  const out: GEdge[] = []
  for (const e of g.edges.values()) {
    const t = new Date(e.ts).getTime()
    if (t < f.fromMs || t > f.toMs) continue
    if (e.traced < f.minAmount) continue
    out.push(e)
  }
  return out
}

export function visibleNodes(g: FlowGraph, edges: GEdge[]): GNode[] {
  const ids = new Set<string>()
  for (const e of edges) {
    ids.add(e.src)
    ids.add(e.dst)
  }
  for (const n of g.nodes.values()) if (n.start) ids.add(n.id)
  return [...ids].map((id) => g.nodes.get(id)).filter((n): n is GNode => !!n)
}

export function timeBounds(g: FlowGraph): [number, number] | null {
  let lo = Infinity
  let hi = -Infinity
  for (const e of g.edges.values()) {
    const t = new Date(e.ts).getTime()
    if (t < lo) lo = t
    if (t > hi) hi = t
  }
  return Number.isFinite(lo) ? [lo, hi] : null
}

/** Payments between the same two accounts drawn as one arrow with their total and count. */
export interface Pair {
  src: string
  dst: string
  traced: number
  amount: number
  count: number
  sink: string | null
  txns: GEdge[]
}

export function pairs(edges: GEdge[]): Pair[] {
  const m = new Map<string, Pair>()
  for (const e of edges) {
    const k = `${e.src}\u0000${e.dst}`
    const p = m.get(k) ?? { src: e.src, dst: e.dst, traced: 0, amount: 0, count: 0, sink: null, txns: [] }
    p.traced += e.traced
    p.amount += e.amount
    p.count += 1
    p.sink = p.sink ?? e.sink
    p.txns.push(e)
    m.set(k, p)
  }
  return [...m.values()]
}

/** Column per level, accounts in a column ordered by the traced money through them. */
export function layout(nodes: GNode[]): Map<string, { x: number; y: number }> {
  const cols = new Map<number, GNode[]>()
  for (const n of nodes) {
    const c = cols.get(n.level) ?? []
    c.push(n)
    cols.set(n.level, c)
  }
  const pos = new Map<string, { x: number; y: number }>()
  const gapY = 64
  for (const [level, col] of cols) {
    col.sort((a, b) => b.tracedIn + b.tracedOut - (a.tracedIn + a.tracedOut) || a.id.localeCompare(b.id))
    const h = (col.length - 1) * gapY
    col.forEach((n, i) => pos.set(n.id, { x: level * 260, y: i * gapY - h / 2 }))
  }
  return pos
}

/**
 * Sankey links without cycles: every transaction flows from (payer, its level) to (payee, its
 * level), and the payee's level is always one more. A cycle back to the start becomes a flow
 * into a copy of the start account at a later level.
 */
export function sankey(edges: GEdge[]): { nodes: { name: string; account: string; level: number }[]; links: { source: string; target: string; value: number; count: number }[] } {
  const links = new Map<string, { source: string; target: string; value: number; count: number }>()
  const names = new Map<string, { name: string; account: string; level: number }>()
  const key = (a: string, l: number) => {
    const name = `${a}@${l}`
    if (!names.has(name)) names.set(name, { name, account: a, level: l })
    return name
  }
  for (const e of edges) {
    if (e.traced <= 0) continue
    const s = key(e.src, e.payerLevel)
    const d = key(e.dst, e.payeeLevel)
    const k = `${s}\u0000${d}`
    const link = links.get(k) ?? { source: s, target: d, value: 0, count: 0 }
    link.value += e.traced
    link.count += 1
    links.set(k, link)
  }
  return { nodes: [...names.values()], links: [...links.values()] }
}

/** A cell safe for a spreadsheet: quoted, and never read as a formula. */
function cell(v: unknown): string {
  let s = v === null || v === undefined ? '' : String(v)
  if (/^[=+\-@\t\r]/.test(s) && !/^-?\d+(\.\d+)?$/.test(s)) s = `'${s}`
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

export function edgesCsv(edges: GEdge[]): string {
  const head = ['txn_id', 'ts', 'src_account', 'dst_account', 'amount', 'traced', 'hop', 'channel', 'sink']
  const rows = [...edges]
    .sort((a, b) => a.payerLevel - b.payerLevel || (a.ts < b.ts ? -1 : 1))
    .map((e) => [e.txnId, e.ts, e.src, e.dst, e.amount.toFixed(2), e.traced.toFixed(2), hopOf(e), e.channel, e.sink].map(cell).join(','))
  return [head.join(','), ...rows].join('\r\n') + '\r\n'
}

export function describe(req: TraceRequest): string {
  return `${req.direction} ${req.account ?? req.txn_id} ×${req.max_hops}`
}
