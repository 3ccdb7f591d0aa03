import { useState } from "preact/hooks";
import { del, get, listAll, post } from "../api";
import { formatTime } from "../lib/format";
import { Busy, ErrorBox, ListTable, Section, Status, usePoll } from "../ui";

interface Deployment {
  id: string;
  model: string;
  status: string;
  status_message: string | null;
  replicas: number;
  ready_replicas: number;
  min_replicas: number;
  max_replicas: number;
  shared: boolean;
  adapters: string[];
  error: { code: string; message: string } | null;
  created_at: number;
}

const MOVING = ["pending", "deploying", "deleting"];

/** The list, with each moving deployment read on its own: a retrieve asks the backend, so `ready` shows at once. */
async function loadDeployments(): Promise<Deployment[]> {
  const list = (await listAll<Deployment>("/v1/deployments", 100, 500)).filter((d) => d.status !== "deleted");
  return Promise.all(list.map((d) => (MOVING.includes(d.status) ? get<Deployment>(`/v1/deployments/${d.id}`).catch(() => d) : d)));
}

function Scale({ d, onDone }: { d: Deployment; onDone: () => void }) {
  const [min, setMin] = useState(String(d.min_replicas));
  const [max, setMax] = useState(String(d.max_replicas));
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await post(`/v1/deployments/${d.id}/scale`, { min_replicas: Number(min), max_replicas: Number(max) });
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="inline" onSubmit={submit}>
      <label for={`min-${d.id}`}>min</label>
      <input id={`min-${d.id}`} type="number" min={0} value={min} onInput={(e) => setMin(e.currentTarget.value)} />
      <label for={`max-${d.id}`}>max</label>
      <input id={`max-${d.id}`} type="number" min={1} value={max} onInput={(e) => setMax(e.currentTarget.value)} />
      <button type="submit" class="secondary">Scale</button>
      <ErrorBox error={error} />
    </form>
  );
}

export function ModelsPage() {
  const models = usePoll(() => get("/v1/models"), []);
  const deployments = usePoll(loadDeployments, [], 2000, (ds) => ds.some((d) => MOVING.includes(d.status)));
  const [error, setError] = useState<unknown>(null);
  const [model, setModel] = useState("");
  const [dedicated, setDedicated] = useState(false);
  const act = async (work: () => Promise<unknown>) => {
    setError(null);
    try {
      await work();
    } catch (err) {
      setError(err);
    }
    models.reload();
    deployments.reload();
  };
  const ids: string[] = (models.value?.data ?? []).map((m: any) => m.id);
  const chosen = model || ids[0] || "";
  return (
    <>
      <h1 tabIndex={-1}>Models and deployments</h1>
      <ErrorBox error={error} />
      <Section title="Models">
        <ErrorBox error={models.error} />
        {!models.value && !models.error && <Busy label="Loading models…" />}
        <ul class="models">
          {(models.value?.data ?? []).map((m: any) => (
            <li key={m.id}>
              <span class="mono wrap">{m.id}</span> <span class="muted small">owned by {m.owned_by}</span>
              {m.id.startsWith("ft:") && (
                <button class="danger small" onClick={() => confirm(`Delete ${m.id}? Its adapter and checkpoints are removed.`) && act(() => del(`/v1/models/${m.id}`))}>Delete</button>
              )}
            </li>
          ))}
        </ul>
      </Section>
      <Section title="Deploy">
        <form class="inline" id="deploy" onSubmit={(e) => { e.preventDefault(); act(() => post("/v1/deployments", { model: chosen, dedicated })); }}>
          <label for="deploy-model">Model</label>
          <select id="deploy-model" value={chosen} onChange={(e) => setModel(e.currentTarget.value)}>
            {ids.map((id) => <option value={id}>{id}</option>)}
          </select>
          <label><input type="checkbox" checked={dedicated} onChange={(e) => setDedicated(e.currentTarget.checked)} /> own server (fine-tuned models)</label>
          <button type="submit" disabled={!chosen}>Deploy</button>
        </form>
      </Section>
      <Section title="Deployments">
        <ErrorBox error={deployments.error} />
        <ListTable
          id="deployments"
          items={deployments.value}
          empty="Nothing deployed."
          columns={["Model", "Status", "Replicas", "Scale", <span class="sr-only">Actions</span>]}
          row={(d) => (
            <>
              <td><span class="wrap">{d.model}</span><div class="muted small mono">{d.id} · {formatTime(d.created_at)}{d.shared ? " · shared server" : ""}</div></td>
              <td>
                <Status value={d.status} />
                {d.status_message && <div class="muted small">{d.status_message}</div>}
                {d.error && <div class="error small">{d.error.code}: {d.error.message}</div>}
              </td>
              <td>{d.ready_replicas}/{d.replicas} ready</td>
              <td><Scale d={d} onDone={() => deployments.reload()} /></td>
              <td><button class="danger small" onClick={() => confirm(`Delete deployment ${d.id}?`) && act(() => del(`/v1/deployments/${d.id}`))}>Delete</button></td>
            </>
          )}
        />
      </Section>
    </>
  );
}
