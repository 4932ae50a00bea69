// Short confirmations ("3 alerts closed") shown in the corner; errors stay on the page that had them.
import { reactive } from 'vue'

export interface Toast {
  id: number
  kind: 'ok' | 'error'
  text: string
}

export const toasts = reactive<Toast[]>([])
let next = 1

export function notify(text: string, kind: Toast['kind'] = 'ok', ms = 4000): void {
  const id = next++
  toasts.push({ id, kind, text })
  setTimeout(() => {
    const i = toasts.findIndex((x) => x.id === id)
    if (i >= 0) toasts.splice(i, 1)
  }, ms)
}
