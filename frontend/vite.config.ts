import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";
import { svelte } from "@sveltejs/vite-plugin-svelte";

/** Emits /sw.js with the list of every built file, so the shell works offline. */
function serviceWorker(): Plugin {
  return {
    name: "hearth-service-worker",
    apply: "build",
    generateBundle(_options, bundle) {
      const files = Object.keys(bundle)
        .filter((f) => !f.endsWith(".map"))
        .map((f) => "/" + f);
      const publicFiles = ["/manifest.webmanifest", "/icons/icon-192.png", "/icons/icon-512.png"];
      const precache = [...new Set([...files, ...publicFiles])].sort();
      const version = createHash("sha256").update(precache.join("\n")).digest("hex").slice(0, 12);
      const source = readFileSync(new URL("./src/service-worker.js", import.meta.url), "utf8")
        .replace("__HEARTH_VERSION__", version)
        .replace("__HEARTH_PRECACHE__", JSON.stringify(precache));
      this.emitFile({ type: "asset", fileName: "sw.js", source });
    },
  };
}

export default defineConfig({
  plugins: [svelte(), serviceWorker()],
  build: { target: "es2022", chunkSizeWarningLimit: 6000 },
  test: { include: ["tests/**/*.test.ts"], environment: "node", setupFiles: ["tests/setup-wasm.ts"] },
});
