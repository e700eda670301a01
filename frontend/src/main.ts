import { initializeBase64Wasm } from "@automerge/automerge-repo/slim";
import { automergeWasmBase64 } from "@automerge/automerge/automerge.wasm.base64";
import { mount } from "svelte";
import "./app.css";

await initializeBase64Wasm(automergeWasmBase64);

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch((e) => console.warn("service worker:", e));
}

const { app } = await import("./lib/app.svelte");
const { default: App } = await import("./views/App.svelte");
await app.start();
// The service worker tells open windows about pushes it showed.
navigator.serviceWorker?.addEventListener("message", (ev) => {
  if (ev.data?.type === "hearth-push") {
    app.lastPush = `${ev.data.title}: ${ev.data.body}`;
    app.lastPushUrgency = "";
  }
});
// For the console and browser tests: read state, never needed by the app itself.
(globalThis as { hearth?: unknown }).hearth = app;
mount(App, { target: document.getElementById("app")! });
