// A FIFO async mutex: mutations of the desired state run one at a time, so
// checks (name taken, port taken, endpoints left) and the writes after them
// cannot interleave. Kernel work inside is ~1 ms; slow deletes run after.
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
