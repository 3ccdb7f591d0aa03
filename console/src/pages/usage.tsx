import { useState } from "preact/hooks";
import { get } from "../api";
import { LineChart, color } from "../chart";
import { formatNumber, formatTime } from "../lib/format";
import { bucketLogs, type LogEntry } from "../lib/usage";
import { Busy, ErrorBox, Section, usePoll } from "../ui";

const WINDOWS: [string, number, number][] = [
  ["last hour", 3600, 60],
  ["last 24 hours", 86400, 3600],
  ["last 7 days", 7 * 86400, 6 * 3600],
];

export function UsagePage() {
  const [win, setWin] = useState(0);
  const [, span, bucket] = WINDOWS[win];
  const usage = usePoll(() => get(`/v1/usage?start_time=${Math.floor(Date.now() / 1000) - span}`), [win], 10000);
  const logs = usePoll(() => get<{ data: (LogEntry & Record<string, any>)[] }>("/v1/logs?limit=1000"), [], 10000);
  const until = Math.floor(Date.now() / 1000);
  const series = bucketLogs(logs.value?.data ?? [], bucket, until - span, until);
  const chart = (label: string, by: Record<string, (number | null)[]>) => (
    <div>
      <h3>{label}</h3>
      <LineChart label={`${label} per model over time`} x={series.times} time series={series.models.map((m, i) => ({ label: m, color: color(i), values: by[m] }))} height={200} />
    </div>
  );
  return (
    <>
      <h1 tabIndex={-1}>Usage</h1>
      <div class="inline">
        <label for="usage-window">Window</label>
        <select id="usage-window" value={win} onChange={(e) => setWin(Number(e.currentTarget.value))}>
          {WINDOWS.map(([label], i) => <option value={i}>{label}</option>)}
        </select>
      </div>
      <Section title="Totals per model">
        <ErrorBox error={usage.error} />
        {!usage.value && !usage.error && <Busy label="Loading usage…" />}
        {usage.value && (
          <div class="scroll">
            <table class="list" id="usage">
              <thead><tr><th scope="col">Model</th><th scope="col">Requests</th><th scope="col">Errors</th><th scope="col">Prompt tokens</th><th scope="col">Completion tokens</th><th scope="col">Avg latency</th></tr></thead>
              <tbody>
                {usage.value.data.map((r: any) => (
                  <tr key={r.model}><td class="wrap">{r.model}</td><td class="num requests">{r.requests}</td><td class="num">{r.errors}</td><td class="num">{r.prompt_tokens}</td><td class="num">{r.completion_tokens}</td><td class="num">{formatNumber(r.average_latency_ms, 3)} ms</td></tr>
                ))}
              </tbody>
              <tfoot><tr><th scope="row">All</th><td class="num" id="usage-total-requests">{usage.value.requests}</td><td /><td class="num">{usage.value.prompt_tokens}</td><td class="num">{usage.value.completion_tokens}</td><td /></tr></tfoot>
            </table>
          </div>
        )}
      </Section>
      <Section title="Over time">
        <ErrorBox error={logs.error} />
        {series.times.length ? (
          <div class="charts">
            {chart("Requests", series.requests)}
            {chart("Tokens", series.tokens)}
            {chart("Errors", series.errors)}
            {chart("Average latency (ms)", series.latency)}
          </div>
        ) : logs.value ? <p class="muted">No requests in this window.</p> : null}
      </Section>
      <Section title="Latest requests">
        <div class="scroll">
          <table class="list">
            <thead><tr><th scope="col">Time</th><th scope="col">Model</th><th scope="col">Route</th><th scope="col">Status</th><th scope="col">Tokens</th><th scope="col">Latency</th></tr></thead>
            <tbody>
              {(logs.value?.data ?? []).slice(0, 20).map((l) => (
                <tr key={l.id}><td>{formatTime(l.created_at)}</td><td class="wrap">{l.model}</td><td class="mono">{l.route}</td><td>{l.status_code}</td><td class="num">{l.prompt_tokens + l.completion_tokens}</td><td class="num">{formatNumber(l.latency_ms, 3)} ms</td></tr>
              ))}
            </tbody>
          </table>
        </div>
      </Section>
    </>
  );
}
