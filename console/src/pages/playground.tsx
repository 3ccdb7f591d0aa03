import { useRef, useState } from "preact/hooks";
import { listAll, streamChat, type StreamStats } from "../api";
import { formatNumber } from "../lib/format";
import { ErrorBox, Section, usePoll } from "../ui";

interface Pane {
  model: string;
  text: string;
  stats: StreamStats | null;
  error: unknown;
  streaming: boolean;
}

const empty = (model: string): Pane => ({ model, text: "", stats: null, error: null, streaming: false });

function Answer({ pane, index }: { pane: Pane; index: number }) {
  return (
    <div class="answer" data-pane={index}>
      <h3 class="wrap">{pane.model || "—"}</h3>
      <div class="answer-text" aria-live="polite" aria-busy={pane.streaming}>{pane.text}{pane.streaming && <span class="cursor" aria-hidden="true">▍</span>}</div>
      {pane.stats && (
        <p class="muted small stats-line">
          time to first token {pane.stats.ttftMs === null ? "—" : `${Math.round(pane.stats.ttftMs)} ms`} · {pane.stats.tokens} chunks in {formatNumber(pane.stats.seconds, 3)} s ·{" "}
          {formatNumber(pane.stats.tokens / Math.max(pane.stats.seconds - (pane.stats.ttftMs ?? 0) / 1000, 1e-3), 3)} tokens/s
        </p>
      )}
      <ErrorBox error={pane.error} />
    </div>
  );
}

export function PlaygroundPage() {
  const deployments = usePoll(() => listAll<any>("/v1/deployments", 100, 500), []);
  const ready = [...new Set<string>((deployments.value ?? []).filter((d) => d.status === "ready").map((d) => d.model))];
  const [model, setModel] = useState("");
  const [compare, setCompare] = useState("");
  const [system, setSystem] = useState("");
  const [prompt, setPrompt] = useState("");
  const [temperature, setTemperature] = useState("0.7");
  const [maxTokens, setMaxTokens] = useState("128");
  const [panes, setPanes] = useState<Pane[]>([]);
  const stop = useRef<AbortController | null>(null);
  const first = model || ready[0] || "";

  const run = async (e: Event) => {
    e.preventDefault();
    const models = [first, ...(compare && compare !== first ? [compare] : [])];
    const messages = [...(system.trim() ? [{ role: "system", content: system }] : []), { role: "user", content: prompt }];
    stop.current = new AbortController();
    setPanes(models.map((m) => ({ ...empty(m), streaming: true })));
    const update = (i: number, patch: (p: Pane) => Partial<Pane>) => setPanes((ps) => ps.map((p, j) => (j === i ? { ...p, ...patch(p) } : p)));
    await Promise.all(
      models.map((m, i) =>
        streamChat({ model: m, messages, temperature: Number(temperature), max_tokens: Number(maxTokens) }, (piece) => update(i, (p) => ({ text: p.text + piece })), stop.current!.signal).then(
          (stats) => update(i, () => ({ stats, streaming: false })),
          (error) => update(i, () => ({ error, streaming: false })),
        ),
      ),
    );
  };
  const busy = panes.some((p) => p.streaming);
  return (
    <>
      <h1 tabIndex={-1}>Playground</h1>
      <Section title="Prompt">
        <ErrorBox error={deployments.error} />
        {deployments.value && !ready.length && <p class="muted">No model is ready: deploy one on the Models page.</p>}
        <form class="grid-form" id="chat" onSubmit={run}>
          <label for="pg-model">Model</label>
          <select id="pg-model" value={first} onChange={(e) => setModel(e.currentTarget.value)}>
            {ready.map((m) => <option value={m}>{m}</option>)}
          </select>
          <label for="pg-compare">Compare with (optional)</label>
          <select id="pg-compare" value={compare} onChange={(e) => setCompare(e.currentTarget.value)}>
            <option value="">no comparison</option>
            {ready.filter((m) => m !== first).map((m) => <option value={m}>{m}</option>)}
          </select>
          <label for="pg-system">System prompt</label>
          <textarea id="pg-system" rows={2} value={system} onInput={(e) => setSystem(e.currentTarget.value)} />
          <label for="pg-prompt">Message</label>
          <textarea id="pg-prompt" rows={4} required value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} />
          <div class="inline">
            <label for="pg-temperature">Temperature</label>
            <input id="pg-temperature" type="number" min={0} max={2} step={0.1} value={temperature} onInput={(e) => setTemperature(e.currentTarget.value)} />
            <label for="pg-max-tokens">Max tokens</label>
            <input id="pg-max-tokens" type="number" min={1} max={4096} value={maxTokens} onInput={(e) => setMaxTokens(e.currentTarget.value)} />
          </div>
          <div class="inline">
            <button type="submit" disabled={busy || !first || !prompt.trim()}>{busy ? "Streaming…" : "Send"}</button>
            {busy && <button type="button" class="secondary" onClick={() => stop.current?.abort()}>Stop</button>}
          </div>
        </form>
      </Section>
      {panes.length > 0 && (
        <Section title="Answers">
          <div class={panes.length > 1 ? "compare" : ""}>{panes.map((p, i) => <Answer pane={p} index={i} />)}</div>
        </Section>
      )}
    </>
  );
}
