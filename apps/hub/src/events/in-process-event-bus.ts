import type { EventBus } from './event-bus.js';

/** Adapter for single-node mode: subscribers in this process only (Redis joins replicas in cluster mode). */
export class InProcessEventBus implements EventBus {
  private readonly topics = new Map<string, Set<(message: Buffer) => void>>();

  publish(topic: string, message: Buffer): void {
    const handlers = this.topics.get(topic);
    if (!handlers) return;
    for (const handler of [...handlers]) {
      // A failing subscriber must not keep the message from the others.
      try {
        handler(message);
      } catch {}
    }
  }

  subscribe(topic: string, handler: (message: Buffer) => void): () => void {
    let handlers = this.topics.get(topic);
    if (!handlers) {
      handlers = new Set();
      this.topics.set(topic, handlers);
    }
    const own = (message: Buffer) => handler(message);
    handlers.add(own);
    return () => {
      const set = this.topics.get(topic);
      set?.delete(own);
      if (set?.size === 0) this.topics.delete(topic);
    };
  }

  async close(): Promise<void> {
    this.topics.clear();
  }
}
