/** Files from this size go straight to S3 with the Upload's presigned POST: a Lambda request body is capped at 6 MB
 * (a binary body arrives base64-encoded, a third larger),
 * and big bodies are better not streamed through the API anyway. */
export const DIRECT_UPLOAD_BYTES = 4 * 1024 * 1024;

export function uploadRoute(bytes: number): "files" | "presigned" {
  return bytes >= DIRECT_UPLOAD_BYTES ? "presigned" : "files";
}
