// Only the ECharts pieces the UI draws, so the bundle stays small; the canvas renderer
// is what PNG export reads.
import { BarChart, GraphChart, LineChart, SankeyChart, ScatterChart } from 'echarts/charts'
import {
  DataZoomComponent,
  GridComponent,
  LegendComponent,
  MarkAreaComponent,
  MarkLineComponent,
  TitleComponent,
  TooltipComponent,
} from 'echarts/components'
import * as echarts from 'echarts/core'
import { CanvasRenderer } from 'echarts/renderers'

echarts.use([
  BarChart, GraphChart, LineChart, SankeyChart, ScatterChart,
  DataZoomComponent, GridComponent, LegendComponent, MarkAreaComponent, MarkLineComponent, TitleComponent,
  TooltipComponent, CanvasRenderer,
])

export { echarts }
export type { EChartsType } from 'echarts/core'

/** Colours used across charts, so a typology or state has one colour everywhere. */
export const palette = [
  '#2f6db5', '#d9822b', '#3a9a6a', '#b8434f', '#7a5bb5', '#3aa0b0', '#c0a030', '#8a6a4a',
  '#5b7fa8', '#d46a8a', '#6a9a3a', '#9a5a2a', '#4a4a9a', '#2a8a8a', '#aa7a2a', '#7a7a7a',
]

/** Text in charts is drawn on canvas, so it needs a font that has CJK glyphs. */
export const chartFont =
  '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "Helvetica Neue", Arial, sans-serif'
