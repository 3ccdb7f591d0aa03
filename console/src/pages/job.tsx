import { useEffect, useState } from "preact/hooks";
import { fileText, get, listAll, post } from "../api";
import { LineChart, color } from "../chart";
import { mergePoints, parseMetricsCsv, pointFromEvent, pointFromProgress, pointsFromColumns, type Point } from "../lib/csv";
import { formatDuration, formatNumber, formatTime } from "../lib/format";
import { href } from "../lib/route";
import { Busy, ErrorBox, Section, Status, usePoll } from "../ui";
import { ACTIVE, type Job } from "./jobs";

interface JobEvent {
  id: string;
  created_at: number;
  level: string;
  message: string;
  type: string;
  data: Record<string, unknown>;
}

/** The loss curves: the result file's full step metrics once the job has one; while it runs, the metrics events so
 * far plus each new progress report as it is polled. */
function useCurve(job: Job | null, events: JobEvent[] | null): { points: Point[]; source: string; error: unknown } {
  const [points, setPoints] = useState<Point[]>([]);
  const [source, setSource] = useState("");
  const [error, setError] = useState<unknown>(null);
  const resultFile = job?.result_files?.[0];
  useEffect(() => {
    if (!resultFile) return;
    fileText(resultFile).then(
      (text) => { setPoints(pointsFromColumns(parseMetricsCsv(text))); setSource(`result file ${resultFile}`); },
      setError,
    );
  }, [resultFile]);
  useEffect(() => {
    if (resultFile || !events) return;
    const fromEvents = events.filter((e) => e.type === "metrics").map((e) => pointFromEvent(e.data)).filter((p): p is Point => !!p);
    const live = pointFromProgress(job?.progress);
    setPoints((known) => mergePoints(known, live ? [...fromEvents, live] : fromEvents));
    setSource("progress reports (the full curve arrives with the result file)");
  }, [resultFile, events, job?.progress?.step]);
  return { points, source, error };
}

export function JobPage({ id }: { id: string }) {
  const path = `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`;
  const job = usePoll(() => get<Job>(path), [id], 2000, (j) => ACTIVE.includes(j.status));
  const running = !job.value || ACTIVE.includes(job.value.status);
  const events = usePoll(() => listAll<JobEvent>(`${path}/events`, 100, 5000), [id, job.value?.status], running ? 4000 : 0, () => running);
  const checkpoints = usePoll(() => listAll<any>(`${path}/checkpoints`, 10, 100), [id, job.value?.status, events.value?.length]);
  const curve = useCurve(job.value, events.value);
  const [cancelError, setCancelError] = useState<unknown>(null);
  const [cancelling, setCancelling] = useState(false);

  if (job.error && !job.value) return (<><h1 tabIndex={-1}>Job {id}</h1><ErrorBox error={job.error} /><a href={href("jobs")}>Back to jobs</a></>);
  if (!job.value) return <Busy label="Loading the job…" />;
  const j = job.value;
  const p = j.progress ?? {};
  const fraction = p.total_steps ? Math.min(1, (p.step ?? 0) / p.total_steps) : j.status === "succeeded" ? 1 : 0;
  const cancel = async () => {
    if (!confirm(`Cancel ${j.id}?`)) return;
    setCancelling(true);
    setCancelError(null);
    try {
      await post(`${path}/cancel`);
      job.reload();
    } catch (err) {
      setCancelError(err);
    } finally {
      setCancelling(false);
    }
  };
  const steps = curve.points.map((x) => x.step);
  return (
    <>
      <p><a href={href("jobs")}>← Jobs</a></p>
      <h1 tabIndex={-1} class="mono wrap">{j.id}</h1>
      <Section title="Status" actions={ACTIVE.includes(j.status) && <button class="danger" onClick={cancel} disabled={cancelling}>{cancelling ? "Cancelling…" : "Cancel job"}</button>}>
        <ErrorBox error={cancelError} />
        <dl class="stats">
          <div><dt>Status</dt><dd id="job-status"><Status value={j.status} /></dd></div>
          <div><dt>Base model</dt><dd class="wrap">{j.model}</dd></div>
          <div><dt>Fine-tuned model</dt><dd class="wrap">{j.fine_tuned_model ?? "—"}</dd></div>
          <div><dt>Step</dt><dd>{p.step ? `${p.step} / ${p.total_steps ?? "?"}` : "—"}</dd></div>
          <div><dt>Epoch</dt><dd>{p.epoch ?? "—"}</dd></div>
          <div><dt>Training loss</dt><dd>{formatNumber(p.loss)}</dd></div>
          <div><dt>Validation loss</dt><dd>{formatNumber(p.eval_loss)}</dd></div>
          <div><dt>Tokens/s</dt><dd>{formatNumber(p.tokens_per_second, 3)}</dd></div>
          <div><dt>ETA</dt><dd>{ACTIVE.includes(j.status) ? formatDuration(p.eta_seconds) : "—"}</dd></div>
          <div><dt>Trained tokens</dt><dd>{j.trained_tokens ?? p.trained_tokens ?? "—"}</dd></div>
          <div><dt>Created</dt><dd>{formatTime(j.created_at)}</dd></div>
          <div><dt>Finished</dt><dd>{formatTime(j.finished_at)}</dd></div>
        </dl>
        <progress max={1} value={fraction} aria-label="Training progress" />
        {j.error && <div class="error" role="alert"><strong>{j.error.code}:</strong> {j.error.message}{j.error.param && <span class="muted"> (field: <code>{j.error.param}</code>)</span>}</div>}
      </Section>
      <Section title="Loss">
        <ErrorBox error={curve.error} />
        {curve.points.length ? (
          <LineChart
            label={`Training and validation loss by step, ${curve.points.length} steps`}
            x={steps}
            xLabel="step"
            wholeX
            series={[
              { label: "train_loss", color: color(0), values: curve.points.map((x) => x.train_loss) },
              { label: "valid_loss", color: color(1), values: curve.points.map((x) => x.valid_loss) },
            ]}
          />
        ) : running ? <Busy label="Waiting for the first training step…" /> : <p class="muted">No step metrics were reported.</p>}
        {curve.source && <p class="muted small" id="curve-source">From the {curve.source}.</p>}
      </Section>
      <Section title="Hyperparameters">
        <dl class="stats">
          {Object.entries(j.hyperparameters).map(([k, v]) => <div><dt>{k}</dt><dd>{String(v)}</dd></div>)}
        </dl>
        <p class="muted small">Training file <span class="mono">{j.training_file}</span>{j.validation_file && <> · validation file <span class="mono">{j.validation_file}</span></>}{j.result_files.length > 0 && <> · result file <span class="mono">{j.result_files.join(", ")}</span></>}</p>
      </Section>
      <Section title="Checkpoints">
        <ErrorBox error={checkpoints.error} />
        {checkpoints.value?.length ? (
          <ul>{checkpoints.value.map((c) => <li><span class="mono wrap">{c.fine_tuned_model_checkpoint}</span> <span class="muted">step {c.step_number}, {formatTime(c.created_at)}</span></li>)}</ul>
        ) : <p class="muted">None yet.</p>}
      </Section>
      <Section title="Events">
        <ErrorBox error={events.error} />
        <ol class="events" aria-live="polite">
          {[...(events.value ?? [])].sort((a, b) => b.created_at - a.created_at).slice(0, 200).map((e) => (
            <li key={e.id} class={`level-${e.level}`}><span class="muted small">{formatTime(e.created_at)}</span> {e.message}</li>
          ))}
        </ol>
      </Section>
    </>
  );
}
