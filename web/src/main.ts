import { createApp } from 'vue'
import App from './App.vue'
import { setUnauthorizedHandler } from './api'
import router from './router'
import { session } from './session'
import './styles.css'

setUnauthorizedHandler(() => {
  session.user = null
  const here = router.currentRoute.value
  if (here.name !== 'login') router.replace({ name: 'login', query: { next: here.fullPath, expired: '1' } })
})

createApp(App).use(router).mount('#app')
