import { initializeBase64Wasm } from "@automerge/automerge-repo/slim";
import { automergeWasmBase64 } from "@automerge/automerge/automerge.wasm.base64";

await initializeBase64Wasm(automergeWasmBase64);
