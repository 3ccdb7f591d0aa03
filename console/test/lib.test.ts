import { describe, expect, it } from "vitest";
import { mergePoints, parseMetricsCsv, pointFromProgress, pointsFromColumns } from "../src/lib/csv";
import { formatBytes, formatDuration, previewLine } from "../src/lib/format";
import { pickLines } from "../src/lib/lines";
import { href, parseRoute } from "../src/lib/route";
import { SseParser, chatDelta } from "../src/lib/sse";
import { bucketLogs } from "../src/lib/usage";
import { DIRECT_UPLOAD_BYTES, uploadRoute } from "../src/lib/upload";

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield new TextEncoder().encode(p);
}

describe("step metrics CSV", () => {
  it("reads the result file's columns with empty cells as gaps", () => {
    const cols = parseMetricsCsv("step,train_loss,valid_loss,epoch\n1,2.5,,1\n2,2.0,2.2,1\n");
    expect(pointsFromColumns(cols)).toEqual([
      { step: 1, train_loss: 2.5, valid_loss: null },
      { step: 2, train_loss: 2.0, valid_loss: 2.2 },
    ]);
  });
  it("merges live progress by step, the later report winning and gaps kept", () => {
    const known = [{ step: 1, train_loss: 3, valid_loss: null }, { step: 3, train_loss: 2, valid_loss: null }];
    const merged = mergePoints(known, [{ step: 2, train_loss: 2.5, valid_loss: null }, { step: 3, train_loss: 1.9, valid_loss: 2.1 }]);
    expect(merged.map((p) => [p.step, p.train_loss, p.valid_loss])).toEqual([[1, 3, null], [2, 2.5, null], [3, 1.9, 2.1]]);
    expect(pointFromProgress({ step: 0 })).toBeNull();
    expect(pointFromProgress({ step: 4, loss: 1.5, eval_loss: null })).toEqual({ step: 4, train_loss: 1.5, valid_loss: null });
  });
});

describe("offending lines", () => {
  it("are made visible and bounded, never longer than asked", () => {
    expect(previewLine("a\u0000b\u202ec")).toBe("a\\u0000b\\u202ec");
    const long = previewLine("x".repeat(500), 10);
    expect(long).toBe("x".repeat(10) + "…");
    expect(previewLine("<script>alert(1)</script>")).toBe("<script>alert(1)</script>"); // text, rendered as text
  });
  it("are picked from a stream across chunk boundaries, stopping after the last wanted line", async () => {
    let pulled = 0;
    async function* counted() {
      for await (const c of chunks("one\ntw", "o\r\nthree\n", "four\n", "five\n")) {
        pulled++;
        yield c;
      }
    }
    const found = await pickLines(counted(), [2, 3]);
    expect([...found.entries()]).toEqual([[2, "two"], [3, "three"]]);
    expect(pulled).toBe(2);
    const last = await pickLines(chunks("a\nb"), [2]);
    expect(last.get(2)).toBe("b");
    const capped = await pickLines(chunks("y".repeat(50) + "\n"), [1], 8);
    expect(capped.get(1)).toBe("y".repeat(8));
  });
});

describe("streams", () => {
  it("parse OpenAI's server-sent events split anywhere", () => {
    const parser = new SseParser();
    const first = parser.feed('data: {"choices":[{"delta":{"content":"Hel"}}]}\n\ndata: {"choi');
    const rest = parser.feed('ces":[{"delta":{"content":"lo"}}]}\r\n\r\ndata: [DONE]\n\n');
    const deltas = [...first, ...rest].map(chatDelta);
    expect(deltas.map((d) => d.content).join("")).toBe("Hello");
    expect(deltas[deltas.length - 1].done).toBe(true);
  });
  it("surface an in-stream error event", () => {
    const d = chatDelta('{"error":{"message":"stream_interrupted (req-1)","code":"stream_interrupted"}}');
    expect(d).toEqual({ content: "", done: true, error: "stream_interrupted (req-1)" });
  });
});

describe("routes and formats", () => {
  it("round-trip job ids through the hash", () => {
    expect(parseRoute(href("job", "ftjob-abc"))).toEqual({ page: "job", id: "ftjob-abc" });
    expect(parseRoute("#/usage")).toEqual({ page: "usage" });
    expect(parseRoute("#/nonsense")).toEqual({ page: "files" });
  });
  it("format sizes and durations", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(5 * 1024 * 1024)).toBe("5.0 MiB");
    expect(formatDuration(3725)).toBe("1h 2m");
    expect(formatDuration(null)).toBe("—");
  });
});

describe("usage over time", () => {
  it("buckets requests, tokens, errors and mean latency per model", () => {
    const log = (t: number, model: string, status = 200, latency = 10) => ({ created_at: t, model, status_code: status, prompt_tokens: 3, completion_tokens: 2, latency_ms: latency });
    const s = bucketLogs([log(60, "a"), log(61, "a", 500, 30), log(185, "b")], 60);
    expect(s.times).toEqual([60, 120, 180]);
    expect(s.requests).toEqual({ a: [2, 0, 0], b: [0, 0, 1] });
    expect(s.errors.a).toEqual([1, 0, 0]);
    expect(s.tokens.a).toEqual([10, 0, 0]);
    expect(s.latency.a).toEqual([20, null, null]);
    const windowed = bucketLogs([log(60, "a"), log(185, "b")], 60, 0, 250);
    expect(windowed.times).toEqual([0, 60, 120, 180, 240]);
    expect(windowed.requests.a).toEqual([0, 1, 0, 0, 0]);
    expect(bucketLogs([log(10, "a")], 60, 100, 200).times).toEqual([]);
  });
});

describe("uploads", () => {
  it("send large files straight to S3, under the Lambda request limit once base64-encoded", () => {
    expect(uploadRoute(1000)).toBe("files");
    expect(uploadRoute(DIRECT_UPLOAD_BYTES - 1)).toBe("files");
    expect(uploadRoute(DIRECT_UPLOAD_BYTES)).toBe("presigned");
    expect((DIRECT_UPLOAD_BYTES * 4) / 3).toBeLessThan(6 * 1000 * 1000);
  });
});
