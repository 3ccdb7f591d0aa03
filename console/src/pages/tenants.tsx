import { useState } from "preact/hooks";
import { del, get, post } from "../api";
import { formatTime } from "../lib/format";
import { Busy, ErrorBox, Section, usePoll } from "../ui";

function Keys({ code }: { code: string }) {
  const keys = usePoll(() => get(`/v1/tenants/${code}/api_keys`), [code]);
  const [issued, setIssued] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const act = async (work: () => Promise<any>) => {
    setError(null);
    try {
      return await work();
    } catch (err) {
      setError(err);
    } finally {
      keys.reload();
    }
  };
  return (
    <div>
      <ErrorBox error={keys.error ?? error} />
      <ul>
        {(keys.value?.data ?? []).map((k: any) => (
          <li key={k.id}>
            <span class="mono">{k.prefix}…</span> {k.name ?? ""} <span class="muted small">created {formatTime(k.created_at)}{k.revoked_at ? `, revoked ${formatTime(k.revoked_at)}` : ""}</span>
            {!k.revoked_at && <button class="danger small" onClick={() => confirm(`Revoke ${k.prefix}…?`) && act(() => del(`/v1/tenants/${code}/api_keys/${k.id}`))}>Revoke</button>}
          </li>
        ))}
      </ul>
      <button class="secondary" onClick={async () => { const k = await act(() => post(`/v1/tenants/${code}/api_keys`, {})); if (k) setIssued(k.key); }}>Issue a key</button>
      {issued && <p class="notice" role="status">New key (shown once): <code class="mono wrap">{issued}</code></p>}
    </div>
  );
}

export function TenantsPage() {
  const tenants = usePoll(() => get("/v1/tenants"), []);
  const [code, setCode] = useState("");
  const [open, setOpen] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await post("/v1/tenants", { client_code: code.trim() });
      setCode("");
      tenants.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <h1 tabIndex={-1}>Tenants</h1>
      <Section title="New tenant">
        <form class="inline" onSubmit={create}>
          <label for="tenant-code">client_code</label>
          <input id="tenant-code" required value={code} onInput={(e) => setCode(e.currentTarget.value)} aria-describedby="tenant-code-help" />
          <button type="submit">Create</button>
        </form>
        <p class="muted small" id="tenant-code-help">2–32 of a-z, 0-9 and "-", starting with a letter.</p>
        <ErrorBox error={error} />
      </Section>
      <Section title="Tenants">
        <ErrorBox error={tenants.error} />
        {!tenants.value && !tenants.error && <Busy label="Loading tenants…" />}
        <ul class="tenants">
          {(tenants.value?.data ?? []).map((t: any) => (
            <li key={t.id}>
              <button class="link" aria-expanded={open === t.id} onClick={() => setOpen(open === t.id ? null : t.id)}>{t.client_code}</button>{" "}
              <span class="muted small">{t.status}, created {formatTime(t.created_at)}{t.config?.rate_limit_per_minute ? `, ${t.config.rate_limit_per_minute}/min` : ""}</span>
              {open === t.id && <Keys code={t.id} />}
            </li>
          ))}
        </ul>
      </Section>
    </>
  );
}
