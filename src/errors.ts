// One small errors module: named domain errors carry an exit code and context;
// only the CLI formats them.

/** Documented in the README ("Exit codes"). */
export const ExitCode = {
  ok: 0,
  internal: 1,
  changes: 2,
  invalidInput: 3,
  checksFailed: 4,
  hostsFailed: 5,
  rolledBack: 6,
  unknownState: 7,
  /** `apply PLAN`: the inventory or templates changed since the plan was saved; nothing was applied. */
  stalePlan: 8,
  usage: 64,
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class FleetError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue = ExitCode.internal,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** One problem in an input file, reported as `file:line:col: path: message`. */
export interface Problem {
  file: string;
  line: number;
  col: number;
  /** Dotted path inside the document, e.g. `hosts.mysql-1.private`; empty for file-level problems. */
  path: string;
  message: string;
}

export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/** Bad inventory or template input: every problem at once, nothing touched. */
export class InputError extends FleetError {
  constructor(readonly problems: Problem[]) {
    super(problems.map(formatProblem).join('\n'), ExitCode.invalidInput);
  }
}

/** A static safety check refused the rule sets (lockout, undefined jump, violated intent). */
export class CheckError extends FleetError {
  constructor(message: string) {
    super(message, ExitCode.checksFailed);
  }
}

/** Bad command-line usage. */
export class UsageError extends FleetError {
  constructor(message: string) {
    super(message, ExitCode.usage);
  }
}

/**
 * A host cannot be planned: the rules it runs, or printed back, do not parse.
 * The host's doing, not fleetfw's: exit 5 like any failed host.
 */
export class PlanError extends FleetError {
  constructor(message: string) {
    super(message, ExitCode.hostsFailed);
  }
}

/** The user interrupted a prompt (Ctrl-C read from a raw terminal, where no SIGINT is raised). */
export class InterruptedError extends FleetError {
  constructor(message = 'interrupted') {
    super(message, ExitCode.interrupted);
  }
}

/**
 * A "cannot happen" invariant broke: a bug in fleetfw, reported as one (with its
 * stack). Never for what a user, an input file or a host can cause.
 */
export class InternalError extends FleetError {
  constructor(message: string) {
    super(message, ExitCode.internal);
  }
}

/**
 * The lab refused (exit 64: not root, a lab already running or none there, an
 * inventory it cannot place) or failed while starting (exit 1, with the cause).
 */
export class LabError extends FleetError {}
