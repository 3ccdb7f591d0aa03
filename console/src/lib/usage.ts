/** Request logs (`GET /v1/logs`) → per-model series over time buckets, for the usage charts. */
export interface LogEntry {
  created_at: number;
  model: string;
  status_code: number;
  prompt_tokens: number;
  completion_tokens: number;
  latency_ms: number;
}

export interface Series {
  times: number[];
  models: string[];
  requests: Record<string, number[]>;
  tokens: Record<string, number[]>;
  errors: Record<string, number[]>;
  latency: Record<string, (number | null)[]>;
}

/** Buckets from `start` to `end` (seconds; default: the logs' own span), so a quiet stretch shows as zeros. */
export function bucketLogs(all: LogEntry[], bucketSeconds: number, start?: number, end?: number): Series {
  const logs = all.filter((l) => (start === undefined || l.created_at >= start) && (end === undefined || l.created_at <= end));
  const models = [...new Set(logs.map((l) => l.model))].sort();
  if (!logs.length) return { times: [], models, requests: {}, tokens: {}, errors: {}, latency: {} };
  const first = Math.floor((start ?? Math.min(...logs.map((l) => l.created_at))) / bucketSeconds) * bucketSeconds;
  const lastT = Math.floor((end ?? Math.max(...logs.map((l) => l.created_at))) / bucketSeconds) * bucketSeconds;
  const times: number[] = [];
  for (let t = first; t <= lastT; t += bucketSeconds) times.push(t);
  const zeros = () => times.map(() => 0);
  const series: Series = { times, models, requests: {}, tokens: {}, errors: {}, latency: {} };
  const latencySum: Record<string, number[]> = {};
  for (const m of models) {
    series.requests[m] = zeros();
    series.tokens[m] = zeros();
    series.errors[m] = zeros();
    latencySum[m] = zeros();
  }
  for (const l of logs) {
    const i = Math.floor((l.created_at - first) / bucketSeconds);
    series.requests[l.model][i] += 1;
    series.tokens[l.model][i] += (l.prompt_tokens || 0) + (l.completion_tokens || 0);
    if (l.status_code >= 400) series.errors[l.model][i] += 1;
    latencySum[l.model][i] += l.latency_ms || 0;
  }
  for (const m of models) {
    series.latency[m] = latencySum[m].map((sum, i) => (series.requests[m][i] ? sum / series.requests[m][i] : null));
  }
  return series;
}
