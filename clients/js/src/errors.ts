/**
 * The codes of {@link SwitchyardError}: the server's (from the reply's
 * `response_status`) and the client's own (`timeout`, `disconnected`,
 * `closed`, `connect_failed`).
 */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'too_large'
  | 'rate_limited'
  | 'internal'
  | 'unavailable'
  | 'timeout'
  | 'disconnected'
  | 'closed'
  | 'error';

const byStatus: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'too_large',
  429: 'rate_limited',
  500: 'internal',
  503: 'unavailable',
};

/** The payload of a reply, as the server sends it (DCRF's shape). */
export interface ReplyPayload {
  errors?: unknown[];
  data?: unknown;
  action?: string;
  response_status?: number;
  request_id?: unknown;
  [key: string]: unknown;
}

/**
 * SwitchyardError is what every promise of the client rejects with.
 *
 * `code` says what happened, `status` is the reply's HTTP-like status (0 for
 * the client's own errors), `fields` holds the validation errors by field
 * (`{name: ["This field is required."]}`). For dcrf-client code, it also
 * carries the reply payload's keys: `errors`, `data`, `action`,
 * `response_status`, `request_id`.
 */
export class SwitchyardError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly fields: Record<string, string[]>;
  readonly errors: unknown[];
  readonly data: unknown;
  readonly action: string | undefined;
  readonly response_status: number | undefined;
  readonly request_id: unknown;

  constructor(code: ErrorCode, message: string, status = 0, payload?: ReplyPayload) {
    super(message);
    this.name = 'SwitchyardError';
    this.code = code;
    this.status = status;
    this.errors = payload?.errors ?? [message];
    this.data = payload?.data ?? null;
    this.action = payload?.action;
    this.response_status = payload?.response_status;
    this.request_id = payload?.request_id;
    const fields: Record<string, string[]> = {};
    for (const e of this.errors) {
      if (e && typeof e === 'object' && !Array.isArray(e)) {
        for (const [k, v] of Object.entries(e as Record<string, unknown>)) {
          fields[k] = Array.isArray(v) ? v.map(String) : [String(v)];
        }
      }
    }
    this.fields = fields;
  }

  /** fromReply builds the error of a reply whose status is not 2xx. */
  static fromReply(payload: ReplyPayload): SwitchyardError {
    const status = typeof payload.response_status === 'number' ? payload.response_status : 0;
    const errors = payload.errors ?? [];
    const first = errors[0];
    let message: string;
    if (typeof first === 'string') message = first;
    else if (first && typeof first === 'object') {
      message = Object.entries(first as Record<string, unknown>)
        .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`)
        .join('; ');
    } else message = `request failed with status ${status}`;
    return new SwitchyardError(byStatus[status] ?? 'error', message, status, payload);
  }
}
