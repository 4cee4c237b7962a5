// The official JavaScript client (@avaprotocol/sdk-js 2.16.0, unchanged) against aggregator
// replicas sharing one replicated log (tests/e2e/cluster_npm.rs starts them):
//
//   AGGREGATOR_ENDPOINTS=127.0.0.1:2206,127.0.0.1:2207,127.0.0.1:2208 node cluster.mjs
//
// One user signs in on every replica. Wallets, tasks and secrets are created through replica 1,
// 2, 3 in turn; after each write the same replica reads it back at once (read-own-write), then
// every replica does (they converge). Every replica lists the same tasks, secrets and
// executions. Each task is triggered through one replica and its execution read through the
// next one.
//
// Environment:
//   AGGREGATOR_ENDPOINTS  comma-separated host:port of the replicas (required; plaintext gRPC)
//   CALL_TIMEOUT_MS       per-call timeout given to the sdk (default 20000: a call on a
//                         replica that forwards waits for the writer)
//   WATCHDOG_MS           global watchdog (default 240000)
//
// Output: `ok <check>` per check; on the first mismatch `FAIL <check>: <what differs>` and exit
// code 1. The last line is a JSON summary {"passed":N,"failed":M}.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Client, TriggerFactory, NodeFactory, Edge } from "@avaprotocol/sdk-js";
import { ethers } from "ethers";

const ENDPOINTS = (process.env.AGGREGATOR_ENDPOINTS || "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);
const CALL_TIMEOUT_MS = Number.parseInt(process.env.CALL_TIMEOUT_MS || "20000", 10);
const WATCHDOG_MS = Number.parseInt(process.env.WATCHDOG_MS || "240000", 10);
const BLOCKING_TIMEOUT_MS = Math.max(CALL_TIMEOUT_MS, 30000);
const POLL_TIMEOUT_MS = 30000;

// The sdk's string enums (from @avaprotocol/types), spelled out as interop.mjs does.
const TriggerType = { Manual: "manualTrigger" };
const NodeType = { CustomCode: "customCode" };
const Lang = { JavaScript: "javascript", JSON: "json" };
const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

let passed = 0;

function summary(failed) {
  console.log(JSON.stringify({ passed, failed }));
}

function describeError(e) {
  if (e === undefined || e === null) return "unknown error";
  const msg = String(e.message || e).replace(/\s+/g, " ");
  return typeof e.code === "number" ? `${msg} [grpc code ${e.code}]` : msg;
}

// A check either passes or ends the run: what follows a mismatch would only repeat it.
async function check(name, fn) {
  try {
    const value = await fn();
    passed++;
    console.log(`ok ${name}`);
    return value;
  } catch (e) {
    console.log(`FAIL ${name}: ${describeError(e)}`);
    summary(1);
    process.exit(1);
  }
}

function ulid() {
  let t = Date.now();
  let time = "";
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const rnd = randomBytes(16);
  let rand = "";
  for (let i = 0; i < 16; i++) rand += CROCKFORD[rnd[i] % 32];
  return time + rand;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const same = (a, b) => String(a).toLowerCase() === String(b).toLowerCase();
const sorted = (xs) => [...xs].sort();

function newClient(endpoint) {
  // retries: 1 is a single attempt (the sdk reads `retries || 3` as the number of attempts).
  return new Client({ endpoint, timeout: { timeout: CALL_TIMEOUT_MS, retries: 1, retryDelay: 0 } });
}

// A manual trigger and one code node returning 42.
function workflow(client, name, runner) {
  const now = Date.now();
  const trigger = { id: ulid(), name: "manualTrigger", type: TriggerType.Manual, data: { data: { via: "cluster" }, lang: Lang.JSON } };
  const code = { id: ulid(), name: "code1", type: NodeType.CustomCode, data: { lang: Lang.JavaScript, source: "return 42;" } };
  return {
    codeId: code.id,
    workflow: client.createWorkflow({
      name,
      smartWalletAddress: runner,
      trigger: TriggerFactory.create(trigger),
      nodes: [NodeFactory.create(code)],
      edges: [new Edge({ id: ulid(), source: trigger.id, target: code.id })],
      startAt: now,
      expiredAt: now + 24 * 3600 * 1000,
      maxExecution: 100,
      inputVariables: { settings: { name, runner } },
    }),
  };
}

async function allTaskIds(client, runner) {
  const ids = [];
  let after;
  for (let page = 0; page < 100; page++) {
    const res = await client.getWorkflows([runner], { limit: 10, ...(after ? { after } : {}) });
    ids.push(...res.items.map((t) => t.id));
    if (!res.pageInfo?.hasNextPage) return ids;
    after = res.pageInfo.endCursor;
  }
  throw new Error("more than 100 pages of tasks");
}

async function allExecutionIds(client, taskIds) {
  const ids = [];
  let after;
  for (let page = 0; page < 100; page++) {
    const res = await client.getExecutions(taskIds, { limit: 10, ...(after ? { after } : {}) });
    ids.push(...res.items.map((x) => x.id));
    if (!res.pageInfo?.hasNextPage) return ids;
    after = res.pageInfo.endCursor;
  }
  throw new Error("more than 100 pages of executions");
}

async function main() {
  assert.ok(ENDPOINTS.length >= 2, "AGGREGATOR_ENDPOINTS must name at least two replicas");
  const n = ENDPOINTS.length;
  const replicas = ENDPOINTS.map((endpoint, i) => ({ i, label: `replica ${i + 1} (${endpoint})`, client: newClient(endpoint) }));
  const user = ethers.Wallet.createRandom();
  const tag = randomBytes(3).toString("hex");

  // Sign-in on each replica; a key one replica issued is accepted by the next (same keys).
  const authKeys = [];
  for (const r of replicas) {
    await check(`auth.sign-in.${r.i + 1}`, async () => {
      const { message } = await r.client.getSignatureFormat(user.address);
      const signature = await user.signMessage(message);
      const { authKey } = await r.client.authWithSignature({ message, signature });
      assert.ok(authKey, `${r.label} gave no auth key`);
      r.client.setAuthKey(authKey);
      authKeys.push(authKey);
    });
  }
  for (const r of replicas) {
    const next = replicas[(r.i + 1) % n];
    await check(`auth.key-of-${r.i + 1}-on-${next.i + 1}`, async () => {
      const w = await next.client.getWallet({ salt: "0" }, { authKey: authKeys[r.i] });
      assert.ok(ethers.isAddress(w.address), `${next.label} refused or answered no wallet for ${r.label}'s key`);
    });
  }

  // Wallets: salt 100+i through replica i.
  const wallets = [];
  for (const r of replicas) {
    const salt = String(100 + r.i);
    const w = await check(`wallets.create-through-${r.i + 1}`, () => r.client.getWallet({ salt }));
    wallets.push(w);
    const readers = [r, ...replicas.filter((x) => x !== r)];
    for (const reader of readers) {
      const kind = reader === r ? "own" : "other";
      await check(`wallets.read-${kind}.${r.i + 1}-on-${reader.i + 1}`, async () => {
        const list = await reader.client.getWallets();
        const found = list.find((x) => same(x.address, w.address));
        assert.ok(found, `${reader.label} does not list the wallet of salt ${salt} created through ${r.label}`);
        assert.equal(String(found.salt), salt, `${reader.label}: salt`);
      });
    }
  }
  for (const r of replicas) {
    await check(`wallets.list-converges.${r.i + 1}`, async () => {
      const mine = (await r.client.getWallets()).filter((x) => wallets.some((w) => same(w.address, x.address)));
      assert.equal(mine.length, wallets.length, `${r.label} lists ${mine.length} of the ${wallets.length} wallets`);
    });
  }

  // Tasks: one through each replica, run by the salt-0 wallet.
  const runner = (await check("tasks.runner", () => replicas[0].client.getWallet({ salt: "0" }))).address;
  const tasks = [];
  for (const r of replicas) {
    const name = `cluster-${tag}-${r.i + 1}`;
    const { workflow: wf, codeId } = workflow(r.client, name, runner);
    const id = await check(`tasks.create-through-${r.i + 1}`, async () => {
      const id = await r.client.submitWorkflow(wf);
      assert.match(id || "", ULID_RE, `${r.label}: the task id must be a ULID`);
      return id;
    });
    tasks.push({ id, name, codeId, via: r });
    const readers = [r, ...replicas.filter((x) => x !== r)];
    for (const reader of readers) {
      const kind = reader === r ? "own" : "other";
      await check(`tasks.read-${kind}.${r.i + 1}-on-${reader.i + 1}`, async () => {
        const got = await reader.client.getWorkflow(id);
        assert.equal(got.id, id, `${reader.label}: id`);
        assert.equal(got.name, name, `${reader.label}: name of the task created through ${r.label}`);
        assert.equal(got.status, "enabled", `${reader.label}: status`);
        assert.ok(same(got.smartWalletAddress, runner), `${reader.label}: smartWalletAddress`);
      });
    }
  }
  const taskIds = tasks.map((t) => t.id);
  for (const r of replicas) {
    await check(`tasks.list-converges.${r.i + 1}`, async () => {
      assert.deepEqual(sorted(await allTaskIds(r.client, runner)), sorted(taskIds), `${r.label} lists other tasks than the ${n} created`);
    });
  }

  // Secrets: one through each replica.
  const secretNames = [];
  for (const r of replicas) {
    const name = `cluster_${tag}_${r.i + 1}`;
    await check(`secrets.create-through-${r.i + 1}`, async () => {
      const res = await r.client.createSecret(name, `value-${randomBytes(8).toString("hex")}`);
      assert.equal(res.success, true, `${r.label}: success (message: ${res.message})`);
    });
    secretNames.push(name);
    const readers = [r, ...replicas.filter((x) => x !== r)];
    for (const reader of readers) {
      const kind = reader === r ? "own" : "other";
      await check(`secrets.read-${kind}.${r.i + 1}-on-${reader.i + 1}`, async () => {
        const res = await reader.client.getSecrets();
        assert.ok(res.items.some((x) => x.name === name), `${reader.label} does not list the secret ${name} created through ${r.label}`);
      });
    }
  }
  for (const r of replicas) {
    await check(`secrets.list-converges.${r.i + 1}`, async () => {
      const names = (await r.client.getSecrets()).items.map((x) => x.name).filter((x) => x.startsWith(`cluster_${tag}_`));
      assert.deepEqual(sorted(names), sorted(secretNames), `${r.label} lists other secrets than the ${n} created`);
    });
  }

  // Executions: each task triggered through the replica after the one that created it, its
  // execution read through the one after that; then a blocking trigger through each replica.
  const executions = [];
  for (const t of tasks) {
    const via = replicas[(t.via.i + 1) % n];
    const reader = replicas[(t.via.i + 2) % n];
    const executionId = await check(`executions.trigger-through-${via.i + 1}`, async () => {
      const res = await via.client.triggerWorkflow({ id: t.id, triggerData: { type: TriggerType.Manual, data: { task: t.name } }, isBlocking: false });
      assert.match(res.executionId || "", ULID_RE, `${via.label}: executionId`);
      return res.executionId;
    });
    executions.push({ id: executionId, task: t });
    await check(`executions.finished-on-${reader.i + 1}`, async () => {
      const deadline = Date.now() + POLL_TIMEOUT_MS;
      let status;
      while (Date.now() < deadline) {
        status = await reader.client.getExecutionStatus(t.id, executionId);
        if (status !== "pending") break;
        await sleep(200);
      }
      assert.equal(status, "success", `${reader.label}: status of the execution triggered through ${via.label} after up to ${POLL_TIMEOUT_MS} ms`);
      const ex = await reader.client.getExecution(t.id, executionId);
      assert.equal(ex.id, executionId, `${reader.label}: execution id`);
      const step = (ex.steps || []).find((s) => s.id === t.codeId);
      assert.ok(step, `${reader.label}: no step for the code node`);
      assert.equal(step.output, 42, `${reader.label}: the code node's output`);
    });
  }
  for (const r of replicas) {
    const t = tasks[r.i % tasks.length];
    await check(`executions.blocking-through-${r.i + 1}`, async () => {
      const res = await r.client.triggerWorkflow(
        { id: t.id, triggerData: { type: TriggerType.Manual, data: { blocking: true } }, isBlocking: true },
        { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 1 } },
      );
      assert.equal(res.status, "success", `${r.label}: status of a blocking trigger (error: ${res.error})`);
      const step = (res.steps || []).find((s) => s.id === t.codeId);
      assert.equal(step?.output?.data?.numberValue, 42, `${r.label}: the code node's output`);
      executions.push({ id: res.executionId, task: t });
    });
  }

  // Every replica lists the same executions, each finished, with the same counts.
  const executionIds = executions.map((x) => x.id);
  for (const r of replicas) {
    await check(`executions.list-converges.${r.i + 1}`, async () => {
      assert.deepEqual(sorted(await allExecutionIds(r.client, taskIds)), sorted(executionIds), `${r.label} lists other executions than the ${executionIds.length} run`);
      assert.equal(await r.client.getExecutionCount(taskIds), executionIds.length, `${r.label}: GetExecutionCount`);
      for (const x of executions) {
        const ex = await r.client.getExecution(x.task.id, x.id);
        assert.equal(ex.status, "success", `${r.label}: status of execution ${x.id}`);
      }
      for (const t of tasks) {
        const wf = await r.client.getWorkflow(t.id);
        const runs = executions.filter((x) => x.task === t).length;
        assert.equal(wf.executionCount, runs, `${r.label}: executionCount of ${t.name}`);
      }
    });
  }
  summary(0);
  for (const r of replicas) r.client.rpcClient?.close?.();
}

const watchdog = setTimeout(() => {
  console.log(`FAIL watchdog: the run took longer than ${WATCHDOG_MS} ms`);
  summary(1);
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

main().then(
  () => process.exit(0),
  (e) => {
    console.log(`FAIL setup: ${describeError(e)}`);
    summary(1);
    process.exit(1);
  },
);
