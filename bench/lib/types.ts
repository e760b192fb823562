// The contract between bench/run.ts and each benchmark file. A benchmark is
// bench/<name>.ts whose default export is a Benchmark; run.ts discovers it,
// runs it and prints and writes its Report. Nothing else is shared.

export interface BenchOptions {
  /** A short smoke run: fewer iterations, shorter traffic. */
  quick: boolean;
  /** Progress lines (stderr), so a long run shows where it is. */
  log(message: string): void;
}

/** A sample summarised: the median with its spread. */
export interface Stat {
  median: number;
  min: number;
  max: number;
  /** Number of samples. */
  n: number;
}

export interface Row {
  label: string;
  /** One value per subject of the table, in its order; undefined when that subject was not measured. */
  values: (Stat | undefined)[];
}

/**
 * One table of medians. The first subject is Knit; every other subject (a
 * peer, or the floor) gets a column with the ratio Knit/subject.
 */
export interface Table {
  title: string;
  /** Unit of every value in the table, e.g. 'ms', 'Gbit/s', 'MB'. */
  unit: string;
  subjects: string[];
  rows: Row[];
}

/** A target from the issues, and whether this run met it. */
export interface Target {
  /** The target as the issue states it. */
  target: string;
  /** undefined: not measured in this run (a missing peer, a quick run too short to judge). */
  met: boolean | undefined;
  /** The figures that decided it. */
  measured: string;
}

export interface Report {
  title: string;
  tables: Table[];
  targets: Target[];
  /** How it was measured, peers missing, reference figures quoted from the issues. */
  notes: string[];
}

export interface Benchmark {
  /** The name `npm run bench -- NAME` selects; also the file name. */
  name: string;
  description: string;
  /** Peers measured beside Knit (for the report and the listing). */
  peers: string[];
  run(opts: BenchOptions): Promise<Report>;
}
