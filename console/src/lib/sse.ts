/** Server-sent events as OpenAI streams them: `data: {json}` blocks separated by a blank line, ending `data: [DONE]`. */
export class SseParser {
  private buffer = "";

  /** Feed decoded text; returns the complete events' data fields (multi-line data joined by "\n"). */
  feed(text: string): string[] {
    this.buffer += text.replace(/\r\n?/g, "\n");
    const out: string[] = [];
    let end: number;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""));
      if (data.length) out.push(data.join("\n"));
    }
    return out;
  }
}

export interface ChatDelta {
  content: string;
  done: boolean;
  error?: string;
}

/** One event's data → the text it adds; `[DONE]` ends the stream; an in-stream error event is surfaced. */
export function chatDelta(data: string): ChatDelta {
  if (data.trim() === "[DONE]") return { content: "", done: true };
  let chunk: any;
  try {
    chunk = JSON.parse(data);
  } catch {
    return { content: "", done: false, error: `unreadable stream event: ${data.slice(0, 80)}` };
  }
  if (chunk?.error) return { content: "", done: true, error: String(chunk.error.message ?? "stream error") };
  const choice = chunk?.choices?.[0];
  return { content: String(choice?.delta?.content ?? choice?.text ?? ""), done: false };
}
