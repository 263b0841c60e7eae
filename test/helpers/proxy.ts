import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A fault-injecting TCP proxy between a client and one node: it forwards bytes both ways until
 * `cut()`, which destroys every connection through it and leaves new ones hanging (accepted,
 * never forwarded, as a partition looks from the client: no refusal, no answer). `heal()`
 * forwards again.
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #cut = false;
  port = 0;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = createServer((client) => this.#accept(client));
  }

  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const proxy = new FaultProxy(target);
    await new Promise<void>((resolve) => proxy.#server.listen(0, "127.0.0.1", () => resolve()));
    proxy.port = (proxy.#server.address() as { port: number }).port;
    return proxy;
  }

  get endpoint(): { host: string; port: number } {
    return { host: "127.0.0.1", port: this.port };
  }

  #accept(client: Socket): void {
    this.#sockets.add(client);
    client.on("close", () => this.#sockets.delete(client));
    client.on("error", () => client.destroy());
    if (this.#cut) return; // Held open, unanswered, until healed or closed.
    const upstream = createConnection(this.#target);
    this.#sockets.add(upstream);
    upstream.on("close", () => {
      this.#sockets.delete(upstream);
      client.destroy();
    });
    upstream.on("error", () => upstream.destroy());
    client.on("close", () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  cut(): void {
    this.#cut = true;
    for (const socket of this.#sockets) socket.destroy();
  }

  heal(): void {
    this.#cut = false;
    // Connections accepted while cut were never forwarded: drop them, so the client reconnects.
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
