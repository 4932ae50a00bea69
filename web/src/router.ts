// Pages and the login guard. HTML5 history: the server answers index.html for every non-API path.
import { createRouter, createWebHistory, type RouteLocationNormalized } from 'vue-router'
import { homeFor, loadMe, session } from './session'

const router = createRouter({
  history: createWebHistory('/'),
  routes: [
    { path: '/', redirect: () => homeFor(session.user) },
    { path: '/login', name: 'login', component: () => import('./pages/LoginPage.vue'), meta: { public: true } },
    { path: '/alerts', name: 'alerts', component: () => import('./pages/QueuePage.vue') },
    { path: '/alerts/:id', name: 'alert', component: () => import('./pages/AlertPage.vue'), props: true },
    { path: '/cases', name: 'cases', component: () => import('./pages/CasesPage.vue') },
    { path: '/cases/:id', name: 'case', component: () => import('./pages/CasePage.vue'), props: true },
    { path: '/trace', name: 'trace', component: () => import('./pages/TracePage.vue') },
    { path: '/reports', name: 'reports', component: () => import('./pages/ReportsPage.vue') },
    { path: '/dashboard', name: 'dashboard', component: () => import('./pages/DashboardPage.vue') },
    { path: '/supervisor', name: 'supervisor', component: () => import('./pages/SupervisorPage.vue') },
    { path: '/:rest(.*)*', name: 'notfound', component: () => import('./pages/NotFoundPage.vue'), meta: { public: true } },
  ],
  scrollBehavior: (_to, _from, saved) => saved ?? { top: 0 },
})

router.beforeEach(async (to: RouteLocationNormalized) => {
  if (!session.checked) {
    try {
      await loadMe()
    } catch {
      // the API is unreachable: let the page load and show its own error
      return true
    }
  }
  if (to.meta.public) {
    if (to.name === 'login' && session.user) return homeFor(session.user)
    return true
  }
  if (!session.user) return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  return true
})

export default router
