#!/usr/bin/env node
// A `script` agent for `npm run demo`: it reports what it does through the @graft/agent library
// (found through GRAFT_AGENT_LIB, which the broker sets in every runtime), asks a question when its
// task says so, waits for the answer in its inbox, and reports the task done.
//   task: "<role>" or "<role>:ask"     (the agent's task, from GRAFT_TASK)
const { AgentClient, loadInbox, waitForMessages } = await import(process.env.GRAFT_AGENT_LIB);

const agent = AgentClient.fromEnv(process.env);
const [role = 'agent', mode = ''] = (process.env.GRAFT_TASK ?? '').split(':');
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const step = Number(process.env.DEMO_STEP_MS ?? 1200);

// The heartbeat keeps the agent online while it works (and refreshes its token).
const stopHeartbeat = agent.startHeartbeat(10_000);
await agent.status('thinking', `${role}: reading the task`);
await pause(step);
await agent.status('executing', `${role}: running the checks`);
await pause(step);
let summary = `${role}: finished`;
if (mode === 'ask') {
  await agent.ask(`${role}: which branch should I push to?`);
  const inbox = loadInbox(process.env);
  let answer = [];
  while (answer.length === 0) answer = await waitForMessages(inbox.path, 60_000, 200, inbox.offsetFile);
  const branch = answer.map((m) => m.text).join(' ');
  await agent.status('executing', `${role}: pushing to ${branch}`);
  await pause(step);
  summary = `${role}: finished, pushed to ${branch}`;
}
await agent.done(summary);
stopHeartbeat();
// Like a harness session at rest: done, but still there until someone stops it.
setInterval(() => {}, 60_000);
