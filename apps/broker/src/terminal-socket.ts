import { AttachControl, ViewerCloseCode } from '@graft/protocol';
import type { RawData, WebSocket } from 'ws';
import type { Terminal } from './runtime/agent-runtime.js';

/** Output stops being read while the viewer holds more than this unsent, and resumes below LOW_WATER. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const DRAIN_POLL_MS = 20;

/**
 * Connects a viewer's WebSocket to a terminal (the broker local API's attach): binary frames are
 * terminal bytes both ways, text frames from the viewer are JSON controls (`{type:"resize",cols,rows}`).
 * The socket closes 1000 when the shell ends; the shell ends when the socket closes. A slow viewer
 * pauses the terminal's output instead of growing a buffer.
 */
export function bridgeTerminalSocket(ws: WebSocket, terminal: Terminal): void {
  let paused = false;
  terminal.onData((data) => {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(data, { binary: true });
    if (!paused && ws.bufferedAmount > HIGH_WATER) {
      paused = true;
      terminal.pause();
      const poll = setInterval(() => {
        if (ws.readyState !== ws.OPEN || ws.bufferedAmount < LOW_WATER) {
          clearInterval(poll);
          paused = false;
          terminal.resume();
        }
      }, DRAIN_POLL_MS);
    }
  });
  terminal.onExit((reason) => {
    if (ws.readyState === ws.OPEN) ws.close(ViewerCloseCode.normal, reason.slice(0, 120));
  });
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (isBinary) {
      terminal.write(bytes);
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      return;
    }
    const control = AttachControl.safeParse(json);
    if (control.success) terminal.resize(control.data.cols, control.data.rows);
  });
  ws.on('close', () => terminal.close());
  ws.on('error', () => terminal.close());
}
