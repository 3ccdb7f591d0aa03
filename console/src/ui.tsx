import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

/** An API error as the API said it: message, the field it names, and the request id to quote. */
export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : new ApiError(0, String((error as Error)?.message ?? error));
  return (
    <div class="error" role="alert">
      <strong>{e.status ? `Error ${e.status}` : "Error"}:</strong> {e.message}
      {e.param && <span class="muted"> (field: <code>{e.param}</code>)</span>}
      {e.requestId && <div class="muted small">request id {e.requestId}</div>}
    </div>
  );
}

export function Busy({ label }: { label: string }) {
  return (
    <p class="busy" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> {label}
    </p>
  );
}

export function Status({ value }: { value: string }) {
  return <span class={`badge badge-${value}`}>{value}</span>;
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card" aria-label={title}>
      <header class="card-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

/** Load once and then every `everyMs` while `active` says so; keeps the last good value through a failed poll. */
export function usePoll<T>(load: () => Promise<T>, deps: unknown[], everyMs = 0, active: (v: T) => boolean = () => true) {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const depsKey = JSON.stringify(deps);
  const shownFor = useRef(depsKey);
  useEffect(() => {
    if (shownFor.current !== depsKey) {
      shownFor.current = depsKey; // another record: never show the previous one's value meanwhile
      setValue(null);
      setError(null);
    }
    let stopped = false;
    let timer: number | undefined;
    const run = async () => {
      try {
        const v = await loadRef.current();
        if (stopped) return;
        setValue(v);
        setError(null);
        if (everyMs && active(v)) timer = window.setTimeout(run, everyMs);
      } catch (err) {
        if (stopped) return;
        setError(err);
        if (everyMs) timer = window.setTimeout(run, everyMs * 2);
      }
    };
    run();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [...deps, tick]);
  return { value, error, reload: () => setTick((t) => t + 1) };
}

/** Records as a table (`columns` its headings, `row` one record's cells), or `empty` when there are none yet. */
export function ListTable<T extends { id: string }>(props: {
  id: string;
  items: T[] | null | undefined;
  columns: ComponentChildren[];
  row: (item: T) => ComponentChildren;
  empty: string;
}) {
  const { id, items, columns, row, empty } = props;
  if (!items) return null;
  if (!items.length) return <p class="muted">{empty}</p>;
  return (
    <div class="scroll">
      <table class="list" id={id}>
        <thead><tr>{columns.map((c) => <th scope="col">{c}</th>)}</tr></thead>
        <tbody>{items.map((item) => <tr key={item.id}>{row(item)}</tr>)}</tbody>
      </table>
    </div>
  );
}
