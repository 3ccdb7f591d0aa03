import { useEffect, useState } from "preact/hooks";
import { fileChunks, get, listAll, uploadFile } from "../api";
import { formatBytes, formatTime, previewLine } from "../lib/format";
import { pickLines } from "../lib/lines";
import { Busy, ErrorBox, Section, Status, usePoll } from "../ui";

interface FileOut {
  id: string;
  filename: string;
  bytes: number;
  created_at: number;
  purpose: string;
  status: string;
  validation: {
    status: string;
    format?: string | null;
    examples: number;
    lines: number;
    token_estimate: number;
    messages: number;
    error_count: number;
    errors: { line: number | null; reason: string; field?: string | null }[];
  };
}

interface Sending {
  id: number;
  name: string;
  fraction: number;
  error?: unknown;
}

let nextUpload = 0;

function Uploader({ onUploaded }: { onUploaded: (id: string) => void }) {
  const [sending, setSending] = useState<Sending[]>([]);
  const [over, setOver] = useState(false);
  const update = (id: number, patch: Partial<Sending>) => setSending((s) => s.map((x) => (x.id === id ? { ...x, ...patch } : x)));
  const send = (files: FileList | null) => {
    for (const file of Array.from(files ?? [])) {
      const id = nextUpload++;
      setSending((s) => [...s, { id, name: file.name, fraction: 0 }]);
      uploadFile(file, (fraction) => update(id, { fraction })).then(
        (out) => {
          setSending((s) => s.filter((x) => x.id !== id));
          onUploaded(out.id);
        },
        (error) => update(id, { error }),
      );
    }
  };
  return (
    <div>
      <label
        class={`drop ${over ? "over" : ""}`}
        onDragOver={(e) => { e.preventDefault(); setOver(true); }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => { e.preventDefault(); setOver(false); send(e.dataTransfer?.files ?? null); }}
      >
        <span>Drop JSONL training files here, or choose them</span>
        <input id="file-input" type="file" accept=".jsonl,application/jsonl,application/json" multiple onChange={(e) => { send(e.currentTarget.files); e.currentTarget.value = ""; }} />
      </label>
      {sending.map((s) => (
        <div class="upload" key={s.id}>
          <span>{s.name}</span>
          {s.error ? <ErrorBox error={s.error} /> : <progress max={1} value={s.fraction} aria-label={`Uploading ${s.name}`}>{Math.round(s.fraction * 100)}%</progress>}
        </div>
      ))}
    </div>
  );
}

/** The validation report: counts, tokens, and each error with its line number, reason and the line itself (rendered
 * as text, control characters made visible, truncated), read from the file only as far as the last error's line. */
function Report({ file }: { file: FileOut }) {
  const v = file.validation;
  const [lines, setLines] = useState<Map<number, string> | null>(null);
  const [lineError, setLineError] = useState<unknown>(null);
  useEffect(() => {
    const wanted = v.errors.map((e) => e.line).filter((l): l is number => !!l);
    if (!wanted.length) return;
    fileChunks(file.id).then((chunks) => pickLines(chunks, wanted)).then(setLines, setLineError);
  }, [file.id, v.error_count]);
  return (
    <div class="report" data-file={file.id}>
      <dl class="stats">
        <div><dt>Status</dt><dd><Status value={file.status} /></dd></div>
        <div><dt>Format</dt><dd>{v.format ?? "—"}</dd></div>
        <div><dt>Examples</dt><dd>{v.examples}</dd></div>
        <div><dt>Lines</dt><dd>{v.lines}</dd></div>
        <div><dt>Messages</dt><dd>{v.messages}</dd></div>
        <div><dt>Token estimate</dt><dd>{v.token_estimate.toLocaleString()}</dd></div>
        <div><dt>Errors</dt><dd>{v.error_count}</dd></div>
      </dl>
      {file.status === "uploaded" && <Busy label="Validating…" />}
      {v.errors.length > 0 && (
        <table class="errors">
          <caption>{v.error_count > v.errors.length ? `First ${v.errors.length} of ${v.error_count} errors` : "Errors"}</caption>
          <thead><tr><th scope="col">Line</th><th scope="col">Reason</th><th scope="col">Content</th></tr></thead>
          <tbody>
            {v.errors.map((e, i) => (
              <tr key={i} class="validation-error">
                <td class="num">{e.line ?? "—"}</td>
                <td>{e.reason}{e.field ? <span class="muted"> ({e.field})</span> : null}</td>
                <td><code class="line">{e.line && lines?.has(e.line) ? previewLine(lines.get(e.line)!) : ""}</code></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ErrorBox error={lineError} />
    </div>
  );
}

export function FilesPage() {
  const [selected, setSelected] = useState<string | null>(null);
  const files = usePoll(() => listAll<FileOut>("/v1/files?order=desc"), [], 2000, (fs) => fs.some((f) => f.status === "uploaded"));
  const detail = usePoll(() => (selected ? get<FileOut>(`/v1/files/${encodeURIComponent(selected)}`) : Promise.resolve(null)), [selected], 1500, (f) => f?.status === "uploaded");
  return (
    <>
      <h1 tabIndex={-1}>Files</h1>
      <Section title="Upload">
        <Uploader onUploaded={(id) => { setSelected(id); files.reload(); }} />
      </Section>
      <Section title="Your files">
        <ErrorBox error={files.error} />
        {!files.value && !files.error && <Busy label="Loading files…" />}
        {files.value && files.value.length === 0 && <p class="muted">No files yet: drop a JSONL file above.</p>}
        {files.value && files.value.length > 0 && (
          <div class="scroll">
            <table class="list" id="files">
              <thead><tr><th scope="col">File</th><th scope="col">Purpose</th><th scope="col">Size</th><th scope="col">Status</th><th scope="col">Created</th></tr></thead>
              <tbody>
                {files.value.map((f) => (
                  <tr key={f.id} class={selected === f.id ? "selected" : ""}>
                    <td><button class="link" onClick={() => setSelected(f.id)} aria-label={`Show ${f.filename}`}>{f.filename}</button><div class="muted small mono">{f.id}</div></td>
                    <td>{f.purpose}</td>
                    <td>{formatBytes(f.bytes)}</td>
                    <td><Status value={f.status} /></td>
                    <td>{formatTime(f.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Section>
      {selected && (
        <Section title="Validation report">
          <ErrorBox error={detail.error} />
          {detail.value ? <Report file={detail.value} /> : !detail.error && <Busy label="Loading…" />}
        </Section>
      )}
    </>
  );
}
