/** Pick numbered lines (1-based) out of a byte stream, stopping as soon as the last wanted line has been read, so a
 * validation report's offending lines can be shown without downloading a large file whole. Each line is capped. */
export async function pickLines(
  chunks: AsyncIterable<Uint8Array>,
  wanted: Iterable<number>,
  maxChars = 2000,
): Promise<Map<number, string>> {
  const want = new Set(wanted);
  const last = Math.max(0, ...want);
  const found = new Map<number, string>();
  if (!last) return found;
  const decoder = new TextDecoder("utf-8", { fatal: false });
  let lineNo = 1;
  let current = "";
  const finish = () => {
    if (want.has(lineNo)) found.set(lineNo, current.replace(/\r$/, "").slice(0, maxChars));
    lineNo++;
    current = "";
  };
  for await (const chunk of chunks) {
    const text = decoder.decode(chunk, { stream: true });
    let start = 0;
    let nl: number;
    while ((nl = text.indexOf("\n", start)) >= 0) {
      if (want.has(lineNo) && current.length < maxChars) current += text.slice(start, nl);
      finish();
      start = nl + 1;
      if (lineNo > last) return found;
    }
    if (want.has(lineNo) && current.length < maxChars) current += text.slice(start);
  }
  if (current) finish();
  return found;
}
