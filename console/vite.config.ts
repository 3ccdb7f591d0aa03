import { defineConfig } from "vitest/config";

// base "./": the same build serves at /console/ on the local API and at the root of the CloudFront distribution.
export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 300 },
  test: { include: ["test/**/*.test.ts"], environment: "node" },
});
