import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  color: string;
  values: (number | null)[];
}

const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];
export const color = (i: number) => PALETTE[i % PALETTE.length];

/** A uPlot line chart that follows its container's width and takes new data without being rebuilt. */
const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

export function LineChart(props: { label: string; x: number[]; series: ChartSeries[]; time?: boolean; height?: number; xLabel?: string; wholeX?: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = props.series.map((s) => s.label).join("|") + (props.time ? ":t" : "");
  const data = [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData;

  useEffect(() => {
    const el = box.current!;
    const opts: uPlot.Options = {
      width: Math.max(240, el.clientWidth),
      height: props.height ?? 260,
      scales: { x: { time: !!props.time } },
      axes: [{ label: props.xLabel, ...(props.wholeX ? { incrs: WHOLE } : {}) }, { size: 60 }],
      series: [{ label: props.xLabel ?? "x" }, ...props.series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: true, points: { size: 4 } }))],
    };
    plot.current = new uPlot(opts, data, el);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(240, el.clientWidth), height: opts.height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return <div class="chart" ref={box} role="img" aria-label={props.label} data-points={props.x.length} />;
}
