// Who is logged in. The session itself is the HttpOnly cookie; this only mirrors `/auth/me`.
import { reactive } from 'vue'
import { ApiError, get, post } from './api'
import type { Role, User } from './types'

export const session = reactive<{ user: User | null; checked: boolean }>({ user: null, checked: false })

export async function loadMe(): Promise<User | null> {
  try {
    const me = await get<User | { user: User }>('/auth/me')
    session.user = 'user' in me && me.user ? me.user : (me as User)
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e
    session.user = null
  } finally {
    session.checked = true
  }
  return session.user
}

export async function login(username: string, password: string): Promise<User> {
  const res = await post<{ token: string; user: User }>('/auth/login', { username, password })
  session.user = res.user
  session.checked = true
  return res.user
}

export async function logout(): Promise<void> {
  try {
    await post('/auth/logout')
  } finally {
    session.user = null
  }
}

export function hasRole(...roles: Role[]): boolean {
  return !!session.user && roles.includes(session.user.role)
}

/** Where a user lands after logging in. */
export function homeFor(user: User | null): string {
  if (!user) return '/login'
  if (user.role === 'supervisor') return '/supervisor'
  if (user.role === 'admin') return '/dashboard'
  return '/alerts'
}
