// Numbers, money and times as an investigator reads them, in the current language.
import { lang } from './i18n'

const locale = () => (lang.value === 'zh' ? 'zh-CN' : 'en-GB')

export function num(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—'
  return n.toLocaleString(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** ¥1,234,567.89 */
export function cny(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—'
  return '¥' + num(n, 2)
}

/** Short form for graph labels: ¥12.3万 / ¥1.20亿 in Chinese, ¥123.4K / ¥1.20M in English. */
export function cnyShort(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—'
  const a = Math.abs(n)
  if (lang.value === 'zh') {
    if (a >= 1e8) return `¥${(n / 1e8).toFixed(2)}亿`
    if (a >= 1e4) return `¥${(n / 1e4).toFixed(a >= 1e6 ? 0 : 1)}万`
    return `¥${Math.round(n)}`
  }
  if (a >= 1e9) return `¥${(n / 1e9).toFixed(2)}B`
  if (a >= 1e6) return `¥${(n / 1e6).toFixed(2)}M`
  if (a >= 1e3) return `¥${(n / 1e3).toFixed(1)}K`
  return `¥${Math.round(n)}`
}

export function pct(x: number | null | undefined, digits = 1): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—'
  return `${(100 * x).toFixed(digits)}%`
}

export function score(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '—'
  return x.toFixed(2)
}

function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n)
}

/** 2024-03-01 14:05 in the browser's time zone (the API speaks UTC). */
export function dateTime(iso: string | null | undefined, seconds = false): string {
  if (!iso) return '—'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  const base = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
  return seconds ? `${base}:${pad(d.getSeconds())}` : base
}

export function date(iso: string | null | undefined): string {
  if (!iso) return '—'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—'
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`
  return `${(n / 1024 / 1024).toFixed(1)} MB`
}

/** "3 hours ago" style relative time for due dates and notes. */
export function relative(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return '—'
  const t = new Date(iso).getTime()
  if (Number.isNaN(t)) return iso
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' })
  const diff = (t - now) / 1000
  const a = Math.abs(diff)
  if (a < 60) return rtf.format(Math.round(diff), 'second')
  if (a < 3600) return rtf.format(Math.round(diff / 60), 'minute')
  if (a < 86400) return rtf.format(Math.round(diff / 3600), 'hour')
  return rtf.format(Math.round(diff / 86400), 'day')
}

/** A short, stable form of a long id: the tail is what differs between ids of one detector. */
export function shortId(id: string | null | undefined, keep = 10): string {
  if (!id) return '—'
  return id.length > keep + 1 ? `…${id.slice(-keep)}` : id
}

/** How a case is named in lists: #17 */
export function caseLabel(id: string | number | null | undefined): string {
  return id === null || id === undefined ? '—' : `#${id}`
}

/** Text made safe for the HTML that ECharts tooltips render (data values never become markup). */
export function esc(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
