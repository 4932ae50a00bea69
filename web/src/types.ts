// Shapes of the REST API (docs/api.md). Only what the UI reads is typed; extra fields are ignored.

/** Case ids are integers in the case store; the UI treats ids as opaque. */
export type Id = string | number

export type Role = 'analyst' | 'senior' | 'admin' | 'auditor' | 'supervisor'

export interface User {
  username: string
  display_name: string | null
  role: Role
  tenant: string | null
}

export interface Page<T> {
  items: T[]
  total: number
  page: number
  page_size: number
}

export interface Dataset {
  name: string
  tenant: string
  transactions: number
  accounts: number
  parties: number
  alerts: number
  quarantined: number
  ingests: number
  last_write: string | null
}

export type AlertStatus = 'open' | 'in_case' | 'closed_fp' | 'suppressed'

export interface Alert {
  alert_id: string
  dataset: string
  detector: string
  detector_version: string
  kind: 'rule' | 'miner' | 'model' | string
  subject_type: 'account' | 'party' | 'transaction' | string
  subject_id: string
  party_id: string | null
  ts_start: string
  ts_end: string
  score: number
  typology: string | null
  reasons: string[]
  txn_ids: string[]
  accounts: string[]
  amount_cny: number | null
  report_kind: string
  crcd: string | null
  tosc: string | null
  goaml_indicator: string | null
  status: AlertStatus | string
  assignee: string | null
  case_id: Id | null
  created_at: string
  closed_reason: string | null
  suppressed_until: string | null
  /** Large-value candidates carry the report deadline. */
  due_at?: string | null
  sla_state?: SlaState | null
}

export interface PatternNode {
  id: string
  label: string | null
  alerted: boolean
}

export interface PatternEdge {
  txn_id: string
  source: string
  target: string
  amount_cny: number
  ts: string
  channel: string | null
}

export interface Pattern {
  nodes: PatternNode[]
  edges: PatternEdge[]
}

export type SlaState = 'ok' | 'due_soon' | 'overdue' | string

export interface CaseSummary {
  case_id: Id
  dataset: string
  subject_type: string
  subject_id: string
  title: string | null
  status: string
  assignee: string | null
  risk_score: number | null
  alert_count: number
  amount_cny: number | null
  created_at: string
  updated_at: string
  due_at: string | null
  sla_state: SlaState | null
}

export interface Note {
  id: string | number
  author: string
  text: string
  created_at: string
}

export interface Evidence {
  id: string | number
  kind: 'trace' | 'file' | string
  title: string
  created_by: string
  created_at: string
  size: number | null
  content_type: string | null
}

export interface Report {
  report_id: string
  case_id: Id | null
  format: string
  status: 'drafted' | 'approved' | 'rejected' | 'filed' | string
  drafter: string
  approver: string | null
  file_name: string | null
  valid: boolean
  errors: string[]
  created_at: string
  approved_at: string | null
  filed_at: string | null
}

export interface Decision {
  from: string | null
  to: string
  actor: string
  reason: string | null
  at: string
}

export interface CaseDetail extends CaseSummary {
  alerts: Alert[]
  notes: Note[]
  evidence: Evidence[]
  reports: Report[]
  allowed_transitions: string[]
  can_draft_report: boolean
  decisions: Decision[]
}

export interface Party {
  party_id: string
  kind: string
  name: string | null
  id_number: string | null
  region: string | null
  industry: string | null
  birth_year: number | null
  gender: string | null
  registered_capital: number | null
  founded: string | null
}

export interface SubjectAccount {
  account_id: string
  bank: string | null
  type: string | null
  opened: string | null
  closed: string | null
}

export interface Subject {
  party: Party | null
  accounts: SubjectAccount[]
  risk_score: number | null
}

export interface TimelineTxn {
  txn_id: string
  ts: string
  src_account: string
  dst_account: string
  amount_cny: number
  channel: string | null
  flagged: boolean
}

export interface TimelineAlert {
  alert_id: string
  ts_start: string
  ts_end: string
  detector: string
  score: number
  typology: string | null
}

export interface Timeline {
  transactions: TimelineTxn[]
  alerts: TimelineAlert[]
  /** The subject's accounts (the API adds them; the UI falls back to the subject profile's). */
  accounts?: string[]
}

export interface AuditEntry {
  seq: number
  at: string
  actor: string
  action: string
  details: unknown
  hash: string
}

export interface TraceRequest {
  dataset: string
  account?: string
  txn_id?: string
  direction: 'forward' | 'backward'
  method: 'fifo' | 'proportional'
  max_hops: number
  hop_window?: string
  min_amount?: number
  start_time?: string
  end_time?: string
}

export interface TraceNode {
  account_id: string
  role: string
  bank: string | null
  traced_in: number
  traced_out: number
  dropped: number
  hop: number
  first_ts: string | null
  last_ts: string | null
  flags: string[] | string | null
}

export interface TraceEdge {
  txn_id: string
  ts: string
  src_account: string
  dst_account: string
  amount: number
  traced: number
  hop: number
  channel: string | null
  sink: string | null
}

export interface TracePath {
  accounts: string[]
  txn_ids: string[]
  timestamps: string[]
  amount: number
  end_traced: number
  end: string
  hops: number
}

export interface TraceResult {
  params: Record<string, unknown>
  summary: Record<string, unknown>
  nodes: TraceNode[]
  edges: TraceEdge[]
  paths: TracePath[]
}

export interface AlertsOverTime {
  buckets: string[]
  series: { typology: string | null; counts: number[] }[]
}

export interface DetectorStat {
  detector: string
  kind: string
  alerts: number
  closed_fp: number
  in_case: number
  fp_rate: number | null
}

export interface CaseAgeBucket {
  bucket: string
  ok: number
  due_soon: number
  overdue: number
}

export interface TopParty {
  subject_type: string
  subject_id: string
  risk_score: number | null
  alerts: number
  amount_cny: number | null
  case_id: Id | null
}

export interface RegionStat {
  region: string
  name: string | null
  alerts: number
  cases: number
  amount_cny: number | null
}

export interface TenantOverview {
  tenant: string
  datasets: number
  transactions: number
  alerts: number
  open_cases: number
  overdue_cases: number
  reports_filed: number
}
