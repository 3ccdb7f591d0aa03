/** Hash routes (`#/jobs/ftjob-…`): the static host needs no rewrite rules, and ids never reach a server log. */
export type Page = "files" | "jobs" | "job" | "models" | "playground" | "usage" | "tenants";

export interface Route {
  page: Page;
  id?: string;
}

const PAGES: Page[] = ["files", "jobs", "models", "playground", "usage", "tenants"];

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "jobs" && parts[1]) return { page: "job", id: parts.slice(1).join("/") };
  const page = PAGES.find((p) => p === parts[0]);
  return { page: page ?? "files" };
}

export function href(page: Page, id?: string): string {
  return id ? `#/${page === "job" ? "jobs" : page}/${encodeURIComponent(id)}` : `#/${page}`;
}
