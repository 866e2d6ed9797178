import type { AttachControl } from '@graft/protocol';
import type { Command } from 'commander';
import { WebSocket } from 'ws';
import { type CliContext, withConnectionOptions } from '../context.js';
import { CliError, UsageError } from '../errors.js';
import { isUuid } from '../resolve/project-ref.js';

/** Ctrl-] (0x1d), as in telnet and `docker attach`: detaches without touching the agent. */
export const DETACH_BYTE = 0x1d;

/** Splits typed input at the detach key: what to send before it, and whether it was pressed. */
export function splitAtDetach(input: Buffer): { send: Buffer; detach: boolean } {
  const at = input.indexOf(DETACH_BYTE);
  return at < 0 ? { send: input, detach: false } : { send: input.subarray(0, at), detach: true };
}

/** The attach WebSocket URL for an agent on a hub (`http` → `ws`). */
export function attachUrl(hubUrl: string, agentId: string, cols: number, rows: number): string {
  const url = new URL(`/api/v1/agents/${encodeURIComponent(agentId)}/attach`, hubUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('cols', String(cols));
  url.searchParams.set('rows', String(rows));
  return url.toString();
}

/** `graft attach <agent>`: an interactive terminal into a running agent. */
export function registerAttachCommand(program: Command, ctx: CliContext): void {
  withConnectionOptions(program.command('attach'))
    .description('Open an interactive shell in a running agent (its container or sandbox, in its workspace); Ctrl-] detaches')
    .argument('<agent>', 'agent id')
    .addHelpText(
      'after',
      `
The local terminal is put in raw mode (every key goes to the agent's shell) and its size follows
yours. Ctrl-] detaches: the shell ends, the agent keeps running. Without a terminal (stdin piped),
input is forwarded as it comes and the command ends when the shell does.

Example:
  $ graft attach 0196f0c4-5d1e-7a3b-9c2d-1e2f3a4b5c6d`,
    )
    .action(async (agent: string, _opts: unknown, cmd: Command) => {
      if (!isUuid(agent)) throw new UsageError(`expected an agent id, got ${JSON.stringify(agent)}`);
      const { hubUrl, token } = ctx.connection(cmd);
      const stdin = process.stdin;
      const stdout = process.stdout;
      const tty = stdin.isTTY === true && stdout.isTTY === true;
      const size = () => ({ cols: stdout.columns ?? 80, rows: stdout.rows ?? 24 });
      const ws = new WebSocket(attachUrl(hubUrl, agent, size().cols, size().rows), { headers: { authorization: `Bearer ${token}` } });
      const outcome = await new Promise<{ code: number; reason: string }>((resolve, reject) => {
        ws.once('unexpected-response', (_req, res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => {
            let message = `the hub refused the attach (HTTP ${res.statusCode})`;
            let code = `http_${res.statusCode}`;
            try {
              const e = (JSON.parse(body) as { error?: { code?: string; message?: string } }).error;
              if (e?.message) message = e.message;
              if (e?.code) code = e.code;
            } catch {}
            reject(new CliError(code, message));
          });
        });
        ws.once('error', (err) => reject(new CliError('network_error', `cannot reach the hub at ${hubUrl}: ${err.message}`)));
        ws.once('open', () => {
          if (tty) stdin.setRawMode(true);
          stdin.resume();
          stdin.on('data', (data: Buffer) => {
            const { send, detach } = splitAtDetach(data);
            if (send.length > 0 && ws.readyState === WebSocket.OPEN) ws.send(send, { binary: true });
            if (detach) ws.close(1000, 'detached');
          });
          stdin.once('end', () => {
            // Piped input ended: the shell goes on until it exits by itself (e.g. after `exit`).
          });
          const onResize = () => {
            const control: AttachControl = { type: 'resize', ...size() };
            if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(control));
          };
          if (tty) stdout.on('resize', onResize);
        });
        ws.on('message', (data: Buffer, isBinary) => {
          if (isBinary) stdout.write(data);
        });
        ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') }));
      }).finally(() => {
        if (tty) stdin.setRawMode(false);
        stdin.pause();
      });
      if (tty) stdout.write('\r\n');
      if (outcome.code === 1000) {
        if (outcome.reason === 'detached') process.stderr.write('graft: detached; the agent keeps running\n');
        return;
      }
      throw new CliError('attach_closed', `the terminal closed (${outcome.code}${outcome.reason ? `: ${outcome.reason}` : ''})`);
    });
}
