/** The job's result file (OpenAI's step metrics CSV) → columns by name; empty cells are null. */
export type Columns = Record<string, (number | null)[]>;

export function parseMetricsCsv(text: string): Columns {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "");
  if (!lines.length) return {};
  const header = lines[0].split(",").map((h) => h.trim());
  const cols: Columns = Object.fromEntries(header.map((h) => [h, []]));
  for (const line of lines.slice(1)) {
    const cells = line.split(",");
    header.forEach((h, i) => {
      const cell = (cells[i] ?? "").trim();
      const value = cell === "" ? null : Number(cell);
      cols[h].push(value === null || Number.isNaN(value) ? null : value);
    });
  }
  return cols;
}

export interface Point {
  step: number;
  train_loss: number | null;
  valid_loss: number | null;
}

/** Points from the CSV, in step order. */
export function pointsFromColumns(cols: Columns): Point[] {
  const steps = cols.step ?? [];
  const out: Point[] = [];
  steps.forEach((step, i) => {
    if (step === null) return;
    out.push({ step, train_loss: cols.train_loss?.[i] ?? null, valid_loss: cols.valid_loss?.[i] ?? null });
  });
  return out;
}

/** Merge new points into known ones by step (a later report of a step wins), in step order. */
export function mergePoints(known: Point[], more: Point[]): Point[] {
  const byStep = new Map(known.map((p) => [p.step, p]));
  for (const p of more) {
    const old = byStep.get(p.step);
    byStep.set(p.step, {
      step: p.step,
      train_loss: p.train_loss ?? old?.train_loss ?? null,
      valid_loss: p.valid_loss ?? old?.valid_loss ?? null,
    });
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/** A job's `progress` (the trainer's progress.json) → a point, or null before the first step. */
export function pointFromProgress(progress: Record<string, unknown> | null | undefined): Point | null {
  const step = Number(progress?.step ?? 0);
  if (!step) return null;
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  return { step, train_loss: num(progress?.loss), valid_loss: num(progress?.eval_loss) };
}

/** A metrics event's `data` (the status worker's names) → a point. */
export function pointFromEvent(data: Record<string, unknown>): Point | null {
  const step = Number(data.step ?? 0);
  if (!step) return null;
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  return { step, train_loss: num(data.train_loss), valid_loss: num(data.valid_loss) };
}
