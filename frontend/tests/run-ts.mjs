// Runs one exported function of a TypeScript module of the frontend under Node,
// for the Python side (tests/spaces/test_ts_agrees.py, bench/spaces.py):
//
//     node tests/run-ts.mjs <module, from frontend/> <export> <input.json>
//
// The module is loaded through Vite's module runner (TypeScript transformed as in
// the app and in Vitest; no build step, no extra package). The function gets the
// parsed input file and its (awaited) result is printed as JSON on stdout.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { runnerImport } from "vite";

const [modulePath, exportName, inputPath] = process.argv.slice(2);
if (!modulePath || !exportName || !inputPath) {
  console.error("usage: node tests/run-ts.mjs <module> <export> <input.json>");
  process.exit(2);
}
const root = fileURLToPath(new URL("..", import.meta.url));
const { module } = await runnerImport("/" + modulePath.replace(/^\/+/, ""), {
  configFile: false,
  root,
  logLevel: "silent",
});
const fn = module[exportName];
if (typeof fn !== "function") {
  console.error(`${modulePath} exports no function ${exportName}`);
  process.exit(2);
}
const result = await fn(JSON.parse(readFileSync(inputPath, "utf8")));
process.stdout.write(JSON.stringify(result) + "\n");
