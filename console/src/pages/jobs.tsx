import { useState } from "preact/hooks";
import { get, listAll, post } from "../api";
import { formatTime } from "../lib/format";
import { href } from "../lib/route";
import { Busy, ErrorBox, ListTable, Section, Status, usePoll } from "../ui";

export interface Job {
  id: string;
  model: string;
  status: string;
  created_at: number;
  finished_at: number | null;
  fine_tuned_model: string | null;
  training_file: string;
  validation_file: string | null;
  suffix: string | null;
  hyperparameters: Record<string, unknown>;
  result_files: string[];
  trained_tokens: number | null;
  estimated_finish: number | null;
  error: { code: string; message: string; param: string | null } | null;
  progress: Record<string, any> | null;
}

export const ACTIVE = ["validating_files", "queued", "running"];

/** Defaults as the API resolves them (functions/jobs/hyperparameters.py); "auto" ones are sized to the dataset. */
const HYPERPARAMETERS: [string, string, string][] = [
  ["n_epochs", "auto", "epochs (auto: from the dataset size, 3 for 100–999 examples)"],
  ["batch_size", "auto", "batch size (auto: from the dataset size, 4 by default)"],
  ["learning_rate_multiplier", "auto", "learning rate multiplier (auto: 1.0)"],
  ["prompt_loss_weight", "0.01", "weight of prompt tokens in the loss"],
  ["lora_r", "8", "LoRA rank"],
  ["lora_alpha", "16", "LoRA alpha"],
  ["lora_dropout", "0.05", "LoRA dropout"],
  ["max_seq_len", "512", "longest sequence in tokens"],
  ["validation_split", "0", "share of the training file held out for validation loss"],
  ["checkpoint_steps", "250", "steps between resumable checkpoints"],
];

function CreateJob({ onCreated }: { onCreated: (job: Job) => void }) {
  const models = usePoll(() => get("/v1/models"), []);
  const files = usePoll(() => listAll<any>("/v1/files?purpose=fine-tune"), []);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const bases = (models.value?.data ?? []).filter((m: any) => !m.id.startsWith("ft:"));
  const ready = (files.value ?? []).filter((f: any) => f.status !== "error");
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const hyperparameters: Record<string, unknown> = {};
    for (const [name] of HYPERPARAMETERS) {
      const raw = String(form.get(`hp-${name}`) ?? "").trim();
      if (raw && raw !== "auto") hyperparameters[name] = Number(raw);
    }
    const body: Record<string, unknown> = { model: form.get("model"), training_file: form.get("training_file"), hyperparameters };
    if (form.get("validation_file")) body.validation_file = form.get("validation_file");
    if (String(form.get("suffix") ?? "").trim()) body.suffix = String(form.get("suffix")).trim();
    setBusy(true);
    setError(null);
    try {
      onCreated(await post<Job>("/v1/fine_tuning/jobs", body));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={submit} class="grid-form" id="create-job">
      <ErrorBox error={models.error ?? files.error} />
      <label for="job-model">Base model</label>
      <select id="job-model" name="model" required>
        {bases.map((m: any) => <option value={m.id}>{m.id}</option>)}
      </select>
      <label for="job-training">Training file</label>
      <select id="job-training" name="training_file" required>
        {ready.map((f: any) => <option value={f.id}>{f.filename} ({f.id}, {f.status})</option>)}
      </select>
      <label for="job-validation">Validation file (optional)</label>
      <select id="job-validation" name="validation_file">
        <option value="">none</option>
        {ready.map((f: any) => <option value={f.id}>{f.filename} ({f.id})</option>)}
      </select>
      <label for="job-suffix">Suffix (optional)</label>
      <input id="job-suffix" name="suffix" maxLength={64} />
      <fieldset>
        <legend>Hyperparameters (empty: the default shown)</legend>
        <div class="hp">
          {HYPERPARAMETERS.map(([name, fallback, help]) => (
            <div>
              <label for={`hp-${name}`}>{name}</label>
              <input id={`hp-${name}`} name={`hp-${name}`} inputMode="decimal" placeholder={fallback} aria-describedby={`hp-${name}-help`} />
              <div class="muted small" id={`hp-${name}-help`}>{help}</div>
            </div>
          ))}
        </div>
      </fieldset>
      <button type="submit" disabled={busy || !bases.length || !ready.length}>{busy ? "Creating…" : "Create job"}</button>
      {!ready.length && files.value && <p class="muted">Upload a training file first.</p>}
      <ErrorBox error={error} />
    </form>
  );
}

export function JobsPage() {
  const jobs = usePoll(() => listAll<Job>("/v1/fine_tuning/jobs", 100, 500), [], 3000, (js) => js.some((j) => ACTIVE.includes(j.status)));
  const [showForm, setShowForm] = useState(false);
  return (
    <>
      <h1 tabIndex={-1}>Fine-tuning</h1>
      <Section title="New job" actions={<button class="secondary" aria-expanded={showForm} onClick={() => setShowForm(!showForm)}>{showForm ? "Hide" : "Create a job"}</button>}>
        {showForm && <CreateJob onCreated={(job) => { location.hash = href("job", job.id); }} />}
      </Section>
      <Section title="Jobs">
        <ErrorBox error={jobs.error} />
        {!jobs.value && !jobs.error && <Busy label="Loading jobs…" />}
        <ListTable
          id="jobs"
          items={jobs.value}
          empty="No jobs yet."
          columns={["Job", "Model", "Status", "Progress", "Created"]}
          row={(j) => (
            <>
              <td><a href={href("job", j.id)} class="mono">{j.id}</a>{j.suffix && <div class="muted small">{j.suffix}</div>}</td>
              <td class="wrap">{j.fine_tuned_model ?? j.model}</td>
              <td><Status value={j.status} /></td>
              <td>{j.progress?.step ? `${j.progress.step}/${j.progress.total_steps ?? "?"}` : "—"}</td>
              <td>{formatTime(j.created_at)}</td>
            </>
          )}
        />
      </Section>
    </>
  );
}
