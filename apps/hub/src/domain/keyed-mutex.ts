/**
 * Runs tasks with the same key one after another, tasks with different keys concurrently.
 * Used so concurrent writes to one agent on this replica queue instead of colliding in the
 * database and retrying; the row's optimistic check still guards against other replicas.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `task` after every earlier task with this key has settled. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Keys with queued or running tasks (for tests and metrics). */
  get size(): number {
    return this.tails.size;
  }
}
