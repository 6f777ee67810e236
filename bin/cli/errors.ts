// Exit codes of the CLI (also in `imagebuilder --help` and the README) and the error that carries one.

export const EXIT = {
  ok: 0,
  /** An error, or (wait) the resource ended otherwise than asked (Failed, Canceled). */
  error: 1,
  /** Bad usage, or (wait) the timeout passed. */
  usage: 2,
  timeout: 2,
  checksum: 3,
  notFound: 4,
  conflict: 5,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  error (server, network, bad input), or wait: the resource ended Failed/Canceled
  2  usage error, or wait: the timeout passed
  3  download: SHA-256 mismatch (the data is kept as FILE.partial)
  4  not found (HTTP 404)
  5  conflict (HTTP 409; apply: an immutable build/export differs from the file)`;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.error,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
    this.name = 'UsageError';
  }
}

/** The exit code for an HTTP error status. */
export function exitCodeForStatus(status: number): number {
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  return EXIT.error;
}
