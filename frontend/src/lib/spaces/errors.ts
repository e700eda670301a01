// The one error type of the spaces core, with the stable reason codes of
// docs/spaces.md (the same codes as hearth/spaces/errors.py).

/** Why bytes were refused at the boundary (parsing, the log's checks, signatures). */
export type RefusalReason =
  | "too-large"
  | "not-utf8"
  | "not-json"
  | "not-canonical"
  | "bad-shape"
  | "bad-field"
  | "bad-version"
  | "bad-did"
  | "too-many-parents"
  | "unknown-type"
  | "bad-actor"
  | "wrong-space"
  | "log-full"
  | "too-many-pending"
  | "unknown-key"
  | "bad-signature"
  | "bad-value"
  | "bad-invite-token";

/** An op was refused. `reason` is the stable machine-readable code; `detail` is for people. */
export class OpError extends Error {
  constructor(
    readonly reason: RefusalReason,
    readonly detail: string,
  ) {
    super(`${reason}: ${detail}`);
    this.name = "OpError";
  }
}
