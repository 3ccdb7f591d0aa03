import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, call, loadConfig, session } from "./api";
import { href, parseRoute, type Page } from "./lib/route";
import { FilesPage } from "./pages/files";
import { JobPage } from "./pages/job";
import { JobsPage } from "./pages/jobs";
import { ModelsPage } from "./pages/models";
import { PlaygroundPage } from "./pages/playground";
import { TenantsPage } from "./pages/tenants";
import { UsagePage } from "./pages/usage";
import { ErrorBox } from "./ui";
import "./styles.css";

type Role = "tenant" | "admin";

/** Which kind of key this is: the admin key lists tenants, a tenant key lists models. */
async function whoAmI(key: string): Promise<Role> {
  try {
    await call("GET", "/v1/tenants", undefined, key);
    return "admin";
  } catch (err) {
    if (!(err instanceof ApiError) || (err.status !== 401 && err.status !== 403)) throw err;
  }
  await call("GET", "/v1/models", undefined, key);
  return "tenant";
}

function SignIn({ onSignedIn }: { onSignedIn: (role: Role) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const role = await whoAmI(key.trim());
      session.set(key.trim());
      onSignedIn(role);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <h1>Mini Studio</h1>
      <form onSubmit={submit} class="card">
        <label for="api-key">API key</label>
        <input id="api-key" name="api-key" type="password" autocomplete="off" required value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        <p class="muted small">Kept in this browser tab only (session storage), sent only to the API.</p>
        <button type="submit" disabled={busy || !key.trim()}>{busy ? "Signing in…" : "Sign in"}</button>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}

const TENANT_PAGES: [Page, string][] = [
  ["files", "Files"],
  ["jobs", "Fine-tuning"],
  ["models", "Models"],
  ["playground", "Playground"],
  ["usage", "Usage"],
];

function App() {
  const [role, setRole] = useState<Role | null>(null);
  const [checking, setChecking] = useState(!!session.get());
  const [route, setRoute] = useState(parseRoute(location.hash));

  useEffect(() => {
    const onHash = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", onHash);
    const key = session.get();
    if (key) whoAmI(key).then(setRole, () => session.clear()).finally(() => setChecking(false));
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  useEffect(() => {
    document.querySelector<HTMLElement>("main h1, main h2")?.focus();
  }, [route.page, route.id]);

  if (checking) return <p class="busy">Checking your key…</p>;
  if (!role) return <SignIn onSignedIn={(r) => { setRole(r); location.hash = r === "admin" ? "#/tenants" : "#/files"; }} />;
  const pages: [Page, string][] = role === "admin" ? [["tenants", "Tenants"]] : TENANT_PAGES;
  const page = role === "admin" ? "tenants" : route.page === "tenants" ? "files" : route.page;
  const current = page === "job" ? "jobs" : page;
  return (
    <div class="shell">
      <header class="top">
        <a class="brand" href={href(pages[0][0])}>Mini Studio</a>
        <nav aria-label="Pages">
          {pages.map(([p, label]) => (
            <a href={href(p)} aria-current={current === p ? "page" : undefined}>{label}</a>
          ))}
        </nav>
        <span class="who muted small">{role === "admin" ? "admin" : "tenant key"}</span>
        <button class="link" onClick={() => { session.clear(); setRole(null); location.hash = ""; }}>Sign out</button>
      </header>
      <main id="main">
        {page === "files" && <FilesPage />}
        {page === "jobs" && <JobsPage />}
        {page === "job" && route.id && <JobPage id={route.id} />}
        {page === "models" && <ModelsPage />}
        {page === "playground" && <PlaygroundPage />}
        {page === "usage" && <UsagePage />}
        {page === "tenants" && <TenantsPage />}
      </main>
    </div>
  );
}

loadConfig().then(() => render(<App />, document.getElementById("app")!));
