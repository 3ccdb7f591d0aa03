/** The only way the console talks to Mini Studio: the public API, with the user's key as a bearer token. */
import { SseParser, chatDelta } from "./lib/sse";
import { uploadRoute } from "./lib/upload";

const KEY = "ministudio.apiKey";
let apiBase = "";

/** `config.json` next to the page names the API in AWS (CloudFront hosts the console, API Gateway the API); served
 * by the API itself (make run) there is none and the API is this origin. */
export async function loadConfig(): Promise<void> {
  try {
    const response = await fetch("./config.json", { cache: "no-store" });
    if (response.ok) {
      const config = await response.json();
      if (typeof config.apiBaseUrl === "string") apiBase = config.apiBaseUrl.replace(/\/+$/, "");
    }
  } catch {
    /* same origin */
  }
}

export const session = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (key: string) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An error as the API said it: OpenAI's `{error: {message, type, param, code, request_id}}` or a seed body. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public param: string | null = null,
    public code: string | null = null,
    public requestId: string | null = null,
  ) {
    super(message);
  }
}

async function toError(response: Response): Promise<ApiError> {
  const requestId = response.headers.get("x-request-id");
  let body: any = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  const e = body?.error;
  if (e && typeof e === "object") {
    return new ApiError(response.status, String(e.message ?? response.statusText), e.param ?? null, e.code ?? null, e.request_id ?? requestId);
  }
  const message = typeof e === "string" ? e : typeof body?.detail === "string" ? body.detail : `HTTP ${response.status} ${response.statusText}`;
  return new ApiError(response.status, message, null, null, body?.request_id ?? requestId);
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const key = session.get();
  return { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...extra };
}

export async function call<T = any>(method: string, path: string, body?: unknown, key?: string): Promise<T> {
  let response: Response;
  try {
    response = await fetch(apiBase + path, {
      method,
      headers: {
        ...headers(body !== undefined ? { "Content-Type": "application/json" } : {}),
        ...(key ? { Authorization: `Bearer ${key}` } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    throw new ApiError(0, `cannot reach the API (${(err as Error).message})`);
  }
  if (!response.ok) throw await toError(response);
  return (await response.json()) as T;
}

export const get = <T = any>(path: string) => call<T>("GET", path);
export const post = <T = any>(path: string, body?: unknown) => call<T>("POST", path, body ?? {});
export const del = <T = any>(path: string) => call<T>("DELETE", path);

export interface ListPage<T> {
  data: T[];
  has_more: boolean;
  last_id?: string | null;
}

/** Every page of a list route that pages with `after`. */
export async function listAll<T extends { id: string }>(path: string, limit = 100, max = 2000): Promise<T[]> {
  const out: T[] = [];
  let after: string | null = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page: ListPage<T> = await get(`${path}${sep}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    out.push(...page.data);
    if (!page.has_more || !page.data.length || out.length >= max) return out;
    after = page.data[page.data.length - 1].id;
  }
}

interface XhrAnswer {
  status: number;
  body: any;
  requestId: string | null;
}

/** A multipart POST with upload progress, which fetch cannot report. */
function xhrPost(url: string, form: FormData, auth: boolean, onProgress: (fraction: number) => void): Promise<XhrAnswer> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    const key = session.get();
    if (auth && key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, `the upload could not reach ${auth ? "the API" : "storage"}`));
    xhr.onload = () => {
      let body: any = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = xhr.responseText;
      }
      resolve({ status: xhr.status, body, requestId: xhr.getResponseHeader("x-request-id") });
    };
    xhr.send(form);
  });
}

function answerError(a: XhrAnswer): ApiError {
  const e = a.body?.error;
  if (e && typeof e === "object") return new ApiError(a.status, String(e.message ?? `HTTP ${a.status}`), e.param ?? null, e.code ?? null, e.request_id ?? a.requestId);
  const s3 = typeof a.body === "string" ? /<Message>([^<]*)<\/Message>/.exec(a.body)?.[1] : null;
  return new ApiError(a.status, s3 ? `storage refused the upload: ${s3}` : `HTTP ${a.status}`, null, null, a.requestId);
}

/** Small files: one multipart `POST /v1/files`. Large ones (DIRECT_UPLOAD_BYTES and up): an OpenAI Upload whose
 * presigned POST sends the bytes straight to S3 (never through the API or its Lambda's request limit), then
 * `complete` turns it into a File. */
export async function uploadFile(file: File, onProgress: (fraction: number) => void): Promise<any> {
  if (uploadRoute(file.size) === "files") {
    const form = new FormData();
    form.append("purpose", "fine-tune");
    form.append("file", file, file.name);
    const answer = await xhrPost(apiBase + "/v1/files", form, true, onProgress);
    if (answer.status >= 200 && answer.status < 300) return answer.body;
    throw answerError(answer);
  }
  const upload = await post("/v1/uploads", { filename: file.name, purpose: "fine-tune", bytes: file.size, mime_type: "application/jsonl" });
  const target = upload.presigned_post;
  const form = new FormData();
  for (const [name, value] of Object.entries(target.fields as Record<string, string>)) form.append(name, value);
  form.append("file", file, file.name);
  const sent = await xhrPost(target.url, form, false, onProgress);
  if (sent.status < 200 || sent.status >= 300) {
    await post(`/v1/uploads/${upload.id}/cancel`).catch(() => undefined);
    throw answerError(sent);
  }
  const done = await post(`/v1/uploads/${upload.id}/complete`, {});
  return done.file;
}

async function* bodyChunks(response: Response): AsyncGenerator<Uint8Array> {
  const reader = response.body!.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** A file's bytes as a stream of chunks (the reader is cancelled when the consumer stops early). */
export async function fileChunks(fileId: string): Promise<AsyncGenerator<Uint8Array>> {
  const response = await fetch(`${apiBase}/v1/files/${encodeURIComponent(fileId)}/content`, { headers: headers() });
  if (!response.ok) throw await toError(response);
  return bodyChunks(response);
}

export async function fileText(fileId: string): Promise<string> {
  const response = await fetch(`${apiBase}/v1/files/${encodeURIComponent(fileId)}/content`, { headers: headers() });
  if (!response.ok) throw await toError(response);
  return response.text();
}

export interface StreamStats {
  ttftMs: number | null;
  tokens: number;
  seconds: number;
}

/** `POST /v1/chat/completions` with `stream: true`; calls onText with each piece as it arrives. */
export async function streamChat(
  body: Record<string, unknown>,
  onText: (text: string) => void,
  signal?: AbortSignal,
): Promise<StreamStats> {
  const started = performance.now();
  let response: Response;
  try {
    response = await fetch(apiBase + "/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ ...body, stream: true }),
      signal,
    });
  } catch (err) {
    throw new ApiError(0, `cannot reach the API (${(err as Error).message})`);
  }
  if (!response.ok) throw await toError(response);
  const parser = new SseParser();
  const decoder = new TextDecoder();
  let ttft: number | null = null;
  let pieces = 0;
  for await (const chunk of bodyChunks(response)) {
    for (const data of parser.feed(decoder.decode(chunk, { stream: true }))) {
      const delta = chatDelta(data);
      if (delta.error) throw new ApiError(502, delta.error);
      if (delta.content) {
        if (ttft === null) ttft = performance.now() - started;
        pieces++;
        onText(delta.content);
      }
      if (delta.done) break;
    }
  }
  return { ttftMs: ttft, tokens: pieces, seconds: (performance.now() - started) / 1000 };
}
