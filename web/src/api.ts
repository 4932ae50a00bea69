// The REST client: JSON in and out, session cookie, CSRF header on every state change,
// and one error type carrying the API's `{error, message}` so pages can show it as it is.

const BASE = '/api/v1'

export class ApiError extends Error {
  readonly status: number
  readonly code: string
  readonly details: unknown

  constructor(status: number, code: string, message: string, details?: unknown) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.details = details
  }
}

type Query = Record<string, string | number | boolean | null | undefined>

/** Called on a 401 from anything but the login call: the session ended (expired or logged out elsewhere). */
let onUnauthorized: (() => void) | null = null
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn
}

export function readCookie(name: string): string | null {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=')
    if (k === name) return decodeURIComponent(v.join('='))
  }
  return null
}

export function url(path: string, query?: Query): string {
  const qs = new URLSearchParams()
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') qs.set(k, String(v))
  }
  const s = qs.toString()
  return BASE + path + (s ? `?${s}` : '')
}

async function errorFrom(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`
  let message = res.statusText || `HTTP ${res.status}`
  let details: unknown
  try {
    const body = await res.json()
    if (body && typeof body === 'object') {
      if (typeof body.error === 'string') code = body.error
      if (typeof body.message === 'string') message = body.message
      // FastAPI's own validation errors: {detail: [...]} or {detail: "..."}
      else if (typeof body.detail === 'string') message = body.detail
      else if (Array.isArray(body.detail)) {
        message = body.detail
          .map((d: { loc?: unknown[]; msg?: string }) => `${(d.loc ?? []).slice(1).join('.')}: ${d.msg ?? ''}`)
          .join('; ')
      }
      details = body.details ?? body.detail
    }
  } catch {
    // not JSON (a proxy's error page): keep the status text
  }
  return new ApiError(res.status, code, message, details)
}

export interface RequestOptions {
  query?: Query
  body?: unknown
  form?: FormData
  /** Return the raw Response (downloads, CSV). */
  raw?: boolean
  signal?: AbortSignal
}

export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  let body: BodyInit | undefined
  if (opts.form) body = opts.form
  else if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(opts.body)
  }
  if (method !== 'GET' && method !== 'HEAD') {
    const csrf = readCookie('tianluo_csrf')
    if (csrf) headers['X-CSRF-Token'] = csrf
  }
  let res: Response
  try {
    res = await fetch(url(path, opts.query), {
      method,
      headers,
      body,
      credentials: 'same-origin',
      signal: opts.signal,
    })
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e
    throw new ApiError(0, 'network', (e as Error).message || 'network error')
  }
  if (!res.ok) {
    const err = await errorFrom(res)
    if (res.status === 401 && path !== '/auth/login' && path !== '/auth/me' && onUnauthorized) onUnauthorized()
    throw err
  }
  if (opts.raw) return res as unknown as T
  if (res.status === 204) return undefined as T
  const type = res.headers.get('content-type') ?? ''
  if (type.includes('application/json')) return (await res.json()) as T
  return (await res.text()) as unknown as T
}

export const get = <T>(path: string, query?: Query, signal?: AbortSignal) =>
  request<T>('GET', path, { query, signal })
export const post = <T>(path: string, body?: unknown) => request<T>('POST', path, { body: body ?? {} })
export const postForm = <T>(path: string, form: FormData) => request<T>('POST', path, { form })

/** Lists come as `{items, total, ...}`; a few endpoints answer with a bare array. Accept both. */
export function itemsOf<T>(x: T[] | { items: T[] } | null | undefined): T[] {
  if (!x) return []
  return Array.isArray(x) ? x : (x.items ?? [])
}

/** Fetch a file (XML, CSV, evidence) with the session and save it under the server's name or `fallback`. */
export async function download(method: 'GET' | 'POST', path: string, fallback: string, body?: unknown): Promise<string> {
  const res = await request<Response>(method, path, { raw: true, body })
  const blob = await res.blob()
  const disp = res.headers.get('content-disposition') ?? ''
  const m = /filename\*=UTF-8''([^;]+)|filename="?([^";]+)"?/i.exec(disp)
  const name = m ? decodeURIComponent(m[1] ?? m[2]) : fallback
  saveBlob(blob, name)
  return name
}

export function saveBlob(blob: Blob, name: string): void {
  const a = document.createElement('a')
  a.href = URL.createObjectURL(blob)
  a.download = name
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000)
}
