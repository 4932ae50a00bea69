// Builds the investigator UI into the Python package, where `tianluo serve` serves it.
import { fileURLToPath, URL } from 'node:url'
import vue from '@vitejs/plugin-vue'
import { defineConfig } from 'vite'

export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: fileURLToPath(new URL('../src/tianluo/web/dist', import.meta.url)),
    emptyOutDir: true,
    // ECharts is one large chunk on purpose: it is cached, and every page but login uses it.
    chunkSizeWarningLimit: 1500,
    sourcemap: false,
  },
  server: {
    // `npm run dev` against a running `tianluo serve --port 8000`.
    proxy: { '/api': 'http://127.0.0.1:8000' },
  },
})
