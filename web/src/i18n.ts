// 中文 / English: one dictionary per language, the same keys in both (the type checker enforces it),
// Chinese by default when the browser prefers it, the choice kept in localStorage.
import { ref, watch } from 'vue'
import { en, zh, typologyNames, type MessageKey } from './messages'

export type Lang = 'zh' | 'en'
const STORAGE_KEY = 'tianluo.lang'

function initialLang(): Lang {
  try {
    const saved = localStorage.getItem(STORAGE_KEY)
    if (saved === 'zh' || saved === 'en') return saved
  } catch {
    // storage disabled: fall through to the browser's preference
  }
  const prefs = navigator.languages?.length ? navigator.languages : [navigator.language]
  for (const l of prefs) {
    const low = (l || '').toLowerCase()
    if (low.startsWith('zh')) return 'zh'
    if (low.startsWith('en')) return 'en'
  }
  return 'en'
}

export const lang = ref<Lang>(initialLang())

function apply(l: Lang): void {
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en'
  document.title = l === 'zh' ? '天罗 · 反洗钱监测' : 'Tianluo · AML monitoring'
}
apply(lang.value)
watch(lang, (l) => {
  try {
    localStorage.setItem(STORAGE_KEY, l)
  } catch {
    // not persisted; the switch still works for this page
  }
  apply(l)
})

export function setLang(l: Lang): void {
  lang.value = l
}

/**
 * The label for `key`, with `{name}` placeholders filled from `params`; `{name:one|many}` picks
 * the English singular or plural by the number `name` ("{n} {n:alert|alerts}").
 */
export function t(key: MessageKey, params?: Record<string, string | number>): string {
  const dict = lang.value === 'zh' ? zh : en
  let s: string = dict[key] ?? en[key] ?? key
  if (params) {
    s = s.replace(/\{(\w+):([^|{}]*)\|([^{}]*)\}/g, (_m, k: string, one: string, many: string) =>
      Number(params[k]) === 1 ? one : many,
    )
    for (const [k, v] of Object.entries(params)) s = s.split(`{${k}}`).join(String(v))
  }
  return s
}

/** A message key if it exists; used for values that come from the API (states, roles, channels). */
export function tv(prefix: string, value: string | null | undefined): string {
  if (value === null || value === undefined || value === '') return '—'
  const key = `${prefix}.${value}` as MessageKey
  const dict = lang.value === 'zh' ? zh : en
  return (dict as Record<string, string>)[key] ?? value
}

export function typologyName(id: string | null | undefined): string {
  if (!id) return '—'
  const names = typologyNames[id]
  if (!names) return id
  return lang.value === 'zh' ? names.zh : names.en
}

const CJK = /[\u3400-\u9fff\uf900-\ufaff]/g

function cjkShare(s: string): number {
  const letters = s.replace(/[\s\d\p{P}\p{S}]/gu, '')
  if (!letters.length) return 0
  return (s.match(CJK)?.length ?? 0) / letters.length
}

/**
 * Rules write each reason in English and Chinese, then a provenance line; miners write English.
 * Show the reasons in the reader's language where both exist, and everything otherwise.
 */
const PROVENANCE = /^STCR \S+: rule /

export function localizedReasons(reasons: string[] | null | undefined): string[] {
  const rs = reasons ?? []
  const texts = rs.filter((r) => !PROVENANCE.test(r))
  const chinese = texts.filter((r) => cjkShare(r) > 0.3)
  const other = texts.filter((r) => cjkShare(r) <= 0.3)
  if (!chinese.length || !other.length) return rs
  // the texts in the reader's language, then the provenance line ("STCR …: rule … (中文名)")
  const keep = new Set(lang.value === 'zh' ? chinese : other)
  return rs.filter((r) => keep.has(r) || PROVENANCE.test(r))
}

/**
 * A case title in the reader's language. The case store writes "fan_in, cycle — party P0001";
 * the typologies and the subject kind are translated, anything else is shown as written.
 */
export function caseTitle(c: { title?: string | null; subject_type: string; subject_id: string }): string {
  const raw = c.title ?? ''
  const m = /^(.*) — (\S+) (.+)$/.exec(raw)
  if (!m) return raw || `${tv('subject', c.subject_type)} ${c.subject_id}`
  const typs = m[1]
    .split(',')
    .map((x) => typologyName(x.trim()))
    .join(t('common.listSep'))
  return `${typs} — ${tv('subject', m[2])} ${m[3]}`
}
