// Interop test: drives our aggregator with the official JavaScript client
// @avaprotocol/sdk-js 2.16.0, unchanged.
//
//   AGGREGATOR_ENDPOINT=127.0.0.1:2206 node interop.mjs
//
// Environment:
//   AGGREGATOR_ENDPOINT  host:port of the aggregator (required; plaintext gRPC)
//   CHAIN_ID             the server's chain id (default 31337)
//   FLOWS                comma-separated subset of auth,wallets,tasks,secrets,executions,original,
//                        onchain (default: all but executions, original and onchain; original is
//                        the behaviour the official client's own tests expect from the original
//                        server)
//   ONCHAIN_KEY          for the onchain flow: the hex private key of its user, whose salt-0
//                        wallet the caller has funded with ETH and ONCHAIN_TOKEN
//   ONCHAIN_TOKEN        an ERC-20 (with transfer) the wallet holds at least 100 of
//   ONCHAIN_RECIPIENT    where the flow's writes and withdrawals send (its balances start at 0)
//   API_KEY              optional: an API key (JWT minted by the server's admin command);
//                        if set, the API-key sign-in path is checked too
//   CALL_TIMEOUT_MS      per-call timeout given to the sdk (default 10000)
//   WATCHDOG_MS          global watchdog (default 120000)
//
// Output: one line per check, `ok <name>` or `FAIL <name>: <reason>`, lines starting
// with `#` are comments, then a final JSON line {"passed":N,"failed":M}.
// Exit code 0 only if nothing failed.
//
// SDK-NOTES.md beside this file describes the sdk calls used here and what the
// sdk needs from the server.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Client, TriggerFactory, NodeFactory, Edge } from "@avaprotocol/sdk-js";
import { Metadata } from "@grpc/grpc-js";
import { ethers } from "ethers";

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

const ALL_FLOWS = ["auth", "wallets", "tasks", "secrets", "executions", "original", "onchain"];
const DEFAULT_FLOWS = ["auth", "wallets", "tasks", "secrets"];

const ENDPOINT = (process.env.AGGREGATOR_ENDPOINT || "").trim();
const CHAIN_ID = Number.parseInt(process.env.CHAIN_ID || "31337", 10);
const API_KEY = (process.env.API_KEY || "").trim();
const CALL_TIMEOUT_MS = Number.parseInt(process.env.CALL_TIMEOUT_MS || "10000", 10);
const WATCHDOG_MS = Number.parseInt(process.env.WATCHDOG_MS || "120000", 10);
// A blocking TriggerTask runs the workflow before answering: give it more time.
const BLOCKING_TIMEOUT_MS = Math.max(CALL_TIMEOUT_MS, 30000);
const POLL_TIMEOUT_MS = 20000;

const FLOWS = (process.env.FLOWS ? process.env.FLOWS.split(",") : DEFAULT_FLOWS)
  .map((s) => s.trim())
  .filter(Boolean);

// The sdk's string enums (from @avaprotocol/types, a dependency of the sdk);
// spelled out here so that this script depends on the sdk package only.
const TriggerType = {
  Manual: "manualTrigger",
  FixedTime: "fixedTimeTrigger",
  Cron: "cronTrigger",
  Block: "blockTrigger",
  Event: "eventTrigger",
};
const NodeType = { CustomCode: "customCode", RestAPI: "restApi" };
const Lang = { JavaScript: "javascript", JSON: "json" };

const TRANSFER_TOPIC = ethers.id("Transfer(address,address,uint256)");
// Any well-formed contract address will do: the event trigger never fires here.
const WATCHED_TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;
const ISO_MS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const GRPC_CODE_NAMES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED",
];
const NOT_FOUND = 5;
const PERMISSION_DENIED = 7;
const UNAUTHENTICATED = 16;

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------

let passed = 0;
let failed = 0;
let finished = false;

function oneLine(s) {
  return String(s).replace(/\s+/g, " ").trim().slice(0, 500);
}

function describeError(e) {
  if (e === undefined || e === null) return "unknown error";
  if (typeof e !== "object") return oneLine(e);
  let msg = oneLine(e.message || String(e));
  if (typeof e.code === "number") {
    msg += ` [grpc ${GRPC_CODE_NAMES[e.code] || e.code}]`;
  }
  if (e.isTimeout) msg += " [sdk timeout]";
  return msg;
}

function pass(name) {
  passed++;
  console.log(`ok ${name}`);
}

function fail(name, reason) {
  failed++;
  console.log(`FAIL ${name}: ${reason}`);
}

// Runs one check; never throws. Returns the check's value, or undefined on failure.
async function check(name, fn) {
  try {
    const value = await fn();
    pass(name);
    return value;
  } catch (e) {
    fail(name, describeError(e));
    return undefined;
  }
}

function finish() {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ passed, failed }));
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

const watchdog = setTimeout(() => {
  fail("watchdog", `the script did not finish within ${WATCHDOG_MS} ms`);
  finish();
}, WATCHDOG_MS);

process.on("unhandledRejection", (e) => {
  fail("unhandled-rejection", describeError(e));
});

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

// A check that cannot run because an earlier one failed: reported as a failure,
// with the reason, and never mistaken for the server's answer by expectError.
class SkipError extends Error {
  constructor(what) {
    super(`skipped: needs ${what}, which an earlier check did not produce`);
  }
}

function need(value, what) {
  if (value === undefined || value === null || value === false) throw new SkipError(what);
  return value;
}

// Stands in for a user whose sign-in failed: any use of it skips the check.
const NO_USER = new Proxy(
  {},
  {
    get(_target, prop) {
      if (prop === "then") return undefined;
      throw new SkipError("a signed-in user");
    },
  },
);

function sameAddress(a, b) {
  return typeof a === "string" && typeof b === "string" && a.toLowerCase() === b.toLowerCase();
}

// Expects fn() to reject. `codes`: allowed gRPC codes (any if omitted);
// `includes`: the message must contain one of these (case-insensitive; any if omitted).
async function expectError(fn, { codes, includes } = {}) {
  let result;
  try {
    result = await fn();
  } catch (e) {
    if (e instanceof SkipError) throw e;
    const msg = String(e?.message || "");
    if (codes && !codes.includes(e?.code)) {
      throw new Error(
        `expected gRPC code ${codes.map((c) => GRPC_CODE_NAMES[c]).join(" or ")}, got: ${describeError(e)}`,
      );
    }
    if (includes && !includes.some((s) => msg.toLowerCase().includes(s.toLowerCase()))) {
      throw new Error(
        `expected a message containing ${includes.map((s) => JSON.stringify(s)).join(" or ")}, got: ${describeError(e)}`,
      );
    }
    return e;
  }
  throw new Error(`expected an error, the call succeeded: ${oneLine(safeJson(result))}`);
}

function safeJson(v) {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));
  } catch {
    return String(v);
  }
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
// A ULID (the kind of id the official client's own tests give triggers and nodes).
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

function decodeJwt(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) {
    throw new Error(`not a JWT (three base64url parts): ${oneLine(token).slice(0, 80)}`);
  }
  const header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8"));
  const payload = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
  return { header, payload, parts };
}

// "Key: value" lines of the sign-in message.
function parseSignMessage(message) {
  const lines = String(message).split("\n");
  const fields = {};
  for (const line of lines) {
    const i = line.indexOf(": ");
    if (i > 0) fields[line.slice(0, i)] = line.slice(i + 2);
  }
  return { lines, fields };
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Minimal protobuf encoding, for the few raw calls below (fields: string or int64).
function encodeVarint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}
function encodeMessage(fields) {
  const chunks = [];
  for (const [num, kind, value] of fields) {
    if (kind === "string") {
      const bytes = Buffer.from(value, "utf8");
      chunks.push(encodeVarint((num << 3) | 2), encodeVarint(bytes.length), bytes);
    } else {
      chunks.push(encodeVarint(num << 3), encodeVarint(value));
    }
  }
  return Buffer.concat(chunks);
}

// A raw unary call over the sdk's own gRPC channel, returning the response bytes
// undecoded: used to check what is on the wire (e.g. that secret values are not).
function rawUnary(sdkClient, method, requestBytes, authKey) {
  return new Promise((resolve, reject) => {
    const md = new Metadata();
    if (authKey) md.set("authkey", authKey);
    sdkClient.rpcClient.makeUnaryRequest(
      `/aggregator.Aggregator/${method}`,
      (b) => b,
      (b) => b,
      requestBytes,
      md,
      { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) },
      (err, resp) => (err ? reject(err) : resolve(resp)),
    );
  });
}

// ---------------------------------------------------------------------------
// Users: a fresh EOA each, signed in through the official flow
// ---------------------------------------------------------------------------

function newClient() {
  // retries: 1 means a single attempt (the sdk reads `retries || 3` as the number of
  // attempts, so 0 would mean 3); a hanging server fails the call after CALL_TIMEOUT_MS.
  return new Client({
    endpoint: ENDPOINT,
    timeout: { timeout: CALL_TIMEOUT_MS, retries: 1, retryDelay: 0 },
  });
}

const clients = [];

async function signIn(label) {
  const wallet = ethers.Wallet.createRandom();
  const client = newClient();
  clients.push(client);
  const { message } = await client.getSignatureFormat(wallet.address);
  if (typeof message !== "string" || message.length === 0) {
    throw new Error("GetSignatureFormat returned an empty message");
  }
  const signature = await wallet.signMessage(message);
  const { authKey } = await client.authWithSignature({ message, signature });
  decodeJwt(authKey); // throws if it is not JWT-shaped
  client.setAuthKey(authKey);
  return { label, wallet, address: wallet.address, client, authKey, message };
}

let user1 = NO_USER;
let user2Promise;
async function getUser2() {
  if (!user2Promise) user2Promise = signIn("user2");
  try {
    return await user2Promise;
  } catch (e) {
    throw new SkipError(`a second signed-in user (its sign-in failed: ${describeError(e)})`);
  }
}

const walletCache = new Map();
async function getWalletOf(user, salt) {
  const key = `${user.address}/${salt}`;
  if (!walletCache.has(key)) {
    const w = await user.client.getWallet({ salt });
    walletCache.set(key, w);
  }
  return walletCache.get(key);
}

// ---------------------------------------------------------------------------
// Workflow building
// ---------------------------------------------------------------------------

function triggerProps(kind, runner) {
  const id = ulid();
  switch (kind) {
    case "manual":
      return { id, name: "manualTrigger", type: TriggerType.Manual, data: { data: { source: "interop" }, lang: Lang.JSON } };
    case "block":
      return { id, name: "blockTrigger", type: TriggerType.Block, data: { interval: 5 } };
    case "cron":
      return { id, name: "cronTrigger", type: TriggerType.Cron, data: { schedules: ["*/5 * * * *"] } };
    case "fixedTime":
      return {
        id,
        name: "fixedTimeTrigger",
        type: TriggerType.FixedTime,
        data: { epochsList: [Math.floor(Date.now() / 1000) * 1000 + 3600 * 1000] },
      };
    case "event":
      return {
        id,
        name: "eventTrigger",
        type: TriggerType.Event,
        data: {
          queries: [
            {
              addresses: [WATCHED_TOKEN],
              // null is a wildcard topic: the sdk sends it as "" and reads "" back as null.
              topics: [TRANSFER_TOPIC, null, ethers.zeroPadValue(runner, 32).toLowerCase()],
            },
          ],
        },
      };
    default:
      throw new Error(`unknown trigger kind ${kind}`);
  }
}

function codeNodeProps(source = "return 42;") {
  return { id: ulid(), name: "code1", type: NodeType.CustomCode, data: { lang: Lang.JavaScript, source } };
}

function restNodeProps() {
  return {
    id: ulid(),
    name: "rest1",
    type: NodeType.RestAPI,
    data: { url: "http://127.0.0.1:9/x", method: "GET", headers: {}, body: "" },
  };
}

// An extra input variable holding every kind of google.protobuf.Value: it must come
// back from GetTask as it was sent (a Value without its kind set, e.g. a null sent as
// an empty Value, makes the sdk's GetTask parsing throw "Unexpected struct type").
const INTEROP_VARIABLE = { nothing: null, flag: true, text: "x", num: 1.5, list: [1, "a", false, null], nested: { n: -2 } };

// Builds the sdk's Workflow object; `nodes` are node props, chained after the trigger.
function buildWorkflow(client, { name, runner, trigger, nodes, maxExecution = 0 }) {
  const now = Date.now();
  const chain = [trigger.id, ...nodes.map((n) => n.id)];
  const edges = [];
  for (let i = 0; i + 1 < chain.length; i++) {
    edges.push({ id: ulid(), source: chain[i], target: chain[i + 1] });
  }
  const props = {
    name,
    smartWalletAddress: runner,
    trigger: TriggerFactory.create(trigger),
    nodes: nodes.map((n) => NodeFactory.create(n)),
    edges: edges.map((e) => new Edge(e)),
    startAt: now,
    expiredAt: now + 24 * 3600 * 1000,
    maxExecution,
    inputVariables: { settings: { name, runner, chain_id: CHAIN_ID }, interop: INTEROP_VARIABLE },
  };
  return { workflow: client.createWorkflow(props), props: { ...props, trigger, nodes, edges } };
}

// ---------------------------------------------------------------------------
// Flow: auth
// ---------------------------------------------------------------------------

async function flowAuth() {
  await check("auth.message-format", async () => {
    const u = need(user1, "a signed-in user");
    const { lines, fields } = parseSignMessage(u.message);
    assert.equal(lines[0], "Please sign the below text for ownership verification.", "first line");
    assert.equal(lines[1], "", "second line must be empty");
    assert.equal(fields["URI"], "https://app.avaprotocol.org", "URI line");
    assert.equal(fields["Chain ID"], String(CHAIN_ID), "Chain ID line");
    assert.ok(fields["Version"], "Version line missing");
    assert.match(fields["Issued At"] || "", ISO_MS_RE, "Issued At format");
    assert.match(fields["Expire At"] || "", ISO_MS_RE, "Expire At format");
    assert.ok(Date.parse(fields["Expire At"]) > Date.now(), "Expire At must be in the future");
    assert.equal(fields["Wallet"], u.address, "Wallet line must be the address as given");
  });

  await check("auth.jwt-claims", async () => {
    const u = need(user1, "a signed-in user");
    const { header, payload } = decodeJwt(u.authKey);
    assert.equal(header.alg, "HS256", "alg");
    assert.equal(payload.iss, "AvaProtocol", "iss");
    assert.equal(payload.sub, ethers.getAddress(u.address), "sub must be the checksummed wallet");
    const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    assert.ok(aud.includes(String(CHAIN_ID)), `aud ${safeJson(payload.aud)} must contain "${CHAIN_ID}"`);
    assert.equal(typeof payload.exp, "number", "exp");
    assert.ok(payload.exp > Date.now() / 1000, "exp must be in the future");
    const expireAt = Date.parse(parseSignMessage(u.message).fields["Expire At"]);
    assert.ok(Math.abs(payload.exp - Math.floor(expireAt / 1000)) <= 1, "exp must be the message's Expire At");
  });

  await check("auth.wrong-signer-rejected", async () => {
    const u = need(user1, "a signed-in user");
    const other = ethers.Wallet.createRandom();
    const signature = await other.signMessage(u.message);
    await expectError(() => u.client.authWithSignature({ message: u.message, signature }));
  });

  await check("auth.expired-message-rejected", async () => {
    const u = need(user1, "a signed-in user");
    const now = Date.now();
    const msg = u.message
      .replace(/^Issued At: .*$/m, `Issued At: ${new Date(now - 2 * 3600e3).toISOString()}`)
      .replace(/^Expire At: .*$/m, `Expire At: ${new Date(now - 3600e3).toISOString()}`);
    assert.notEqual(msg, u.message, "could not rewrite the message's times");
    const signature = await u.wallet.signMessage(msg);
    await expectError(() => u.client.authWithSignature({ message: msg, signature }));
  });

  await check("auth.wrong-chain-rejected", async () => {
    const u = need(user1, "a signed-in user");
    const msg = u.message.replace(/^Chain ID: .*$/m, `Chain ID: ${CHAIN_ID + 1}`);
    assert.notEqual(msg, u.message, "could not rewrite the message's chain id");
    const signature = await u.wallet.signMessage(msg);
    await expectError(() => u.client.authWithSignature({ message: msg, signature }));
  });

  await check("auth.no-token-rejected", async () => {
    const bare = newClient();
    clients.push(bare);
    await expectError(() => bare.getWallets(), {
      codes: [UNAUTHENTICATED],
      includes: ["User authentication error"],
    });
  });

  await check("auth.garbage-token-rejected", async () => {
    const u = need(user1, "a signed-in user");
    await expectError(() => u.client.getWallets({ authKey: "not-a-jwt" }), {
      codes: [UNAUTHENTICATED],
      includes: ["User authentication error"],
    });
  });

  await check("auth.tampered-token-rejected", async () => {
    const u = need(user1, "a signed-in user");
    const { payload, parts } = decodeJwt(u.authKey);
    const forged = { ...payload, sub: ethers.Wallet.createRandom().address };
    const token = [parts[0], Buffer.from(JSON.stringify(forged)).toString("base64url"), parts[2]].join(".");
    await expectError(() => u.client.getWallets({ authKey: token }), {
      codes: [UNAUTHENTICATED],
      includes: ["User authentication error"],
    });
  });

  if (API_KEY) {
    await check("auth.api-key", async () => {
      const u = need(user1, "a signed-in user");
      const c = newClient();
      clients.push(c);
      const { message } = await c.getSignatureFormat(u.address);
      const { authKey } = await c.authWithAPIKey({ message, apiKey: API_KEY });
      const { payload } = decodeJwt(authKey);
      assert.equal(payload.sub, ethers.getAddress(u.address), "sub must be the wallet named in the message");
      const viaKey = await c.getWallet({ salt: "0" }, { authKey });
      const viaSig = await getWalletOf(u, "0");
      assert.ok(sameAddress(viaKey.address, viaSig.address), "both keys must see the same salt-0 wallet");
    });
  } else {
    console.log("# auth.api-key not checked: API_KEY is not set");
  }
}

// ---------------------------------------------------------------------------
// Flow: wallets
// ---------------------------------------------------------------------------

function checkCounters(w) {
  for (const k of ["totalTaskCount", "enabledTaskCount", "completedTaskCount", "failedTaskCount", "disabledTaskCount"]) {
    assert.equal(typeof w[k], "number", `${k} must be a number`);
    assert.ok(w[k] >= 0, `${k} must be >= 0`);
  }
}

async function flowWallets() {
  const w0 = await check("wallets.get-salt-0", async () => {
    const u = need(user1, "a signed-in user");
    const w = await getWalletOf(u, "0");
    assert.match(w.address || "", ADDRESS_RE, "address");
    assert.equal(w.salt, "0", "salt");
    assert.match(w.factory || "", ADDRESS_RE, "factory (GetWalletResp.factory_address) must be the default factory");
    assert.equal(w.isHidden, false, "isHidden");
    checkCounters(w);
    return w;
  });

  const w1 = await check("wallets.get-salt-1", async () => {
    const u = need(user1, "a signed-in user");
    const w = await getWalletOf(u, "1");
    assert.match(w.address || "", ADDRESS_RE, "address");
    assert.equal(w.salt, "1", "salt");
    if (w0) assert.ok(!sameAddress(w.address, w0.address), "salt 0 and salt 1 must give different wallets");
    checkCounters(w);
    return w;
  });

  await check("wallets.get-is-deterministic", async () => {
    const again = await need(user1, "a signed-in user").client.getWallet({ salt: "0" });
    assert.ok(sameAddress(again.address, need(w0, "the salt-0 wallet").address), "same salt, same address");
  });

  await check("wallets.list", async () => {
    const list = await need(user1, "a signed-in user").client.getWallets();
    assert.ok(Array.isArray(list), "getWallets must give an array");
    for (const item of list) {
      assert.match(item.address || "", ADDRESS_RE, "item address");
      assert.match(item.factory || "", ADDRESS_RE, "item factory (SmartWallet.factory)");
      assert.equal(typeof item.isHidden, "boolean", "item isHidden");
    }
    const a = need(w0, "the salt-0 wallet");
    const b = need(w1, "the salt-1 wallet");
    const with0 = list.filter((x) => sameAddress(x.address, a.address));
    const with1 = list.filter((x) => sameAddress(x.address, b.address));
    assert.equal(with0.length, 1, "the salt-0 wallet must be listed once");
    assert.equal(with1.length, 1, "the salt-1 wallet must be listed once");
    assert.equal(with0[0].salt, "0", "salt of the salt-0 wallet");
    assert.equal(with1[0].salt, "1", "salt of the salt-1 wallet");
  });

  await check("wallets.invalid-factory-rejected", async () => {
    await expectError(() => need(user1, "a signed-in user").client.getWallet({ salt: "0", factoryAddress: "0x1234" }), {
      includes: ["invalid factory address"],
    });
  });

  await check("wallets.negative-salt-rejected", async () => {
    await expectError(() => need(user1, "a signed-in user").client.getWallet({ salt: "-1" }), {
      includes: ["invalid salt value: must be a non-negative integer"],
    });
  });

  await check("wallets.hide", async () => {
    const u = need(user1, "a signed-in user");
    const b = need(w1, "the salt-1 wallet");
    const res = await u.client.setWallet({ salt: "1" }, { isHidden: true });
    assert.equal(res.isHidden, true, "SetWallet response isHidden");
    assert.ok(sameAddress(res.address, b.address), "SetWallet response address");
    const item = (await u.client.getWallets()).find((x) => sameAddress(x.address, b.address));
    assert.ok(item, "a hidden wallet is still listed, flagged isHidden");
    assert.equal(item.isHidden, true, "listed isHidden");
  });

  await check("wallets.unhide", async () => {
    const u = need(user1, "a signed-in user");
    const b = need(w1, "the salt-1 wallet");
    const res = await u.client.setWallet({ salt: "1" }, { isHidden: false });
    assert.equal(res.isHidden, false, "SetWallet response isHidden");
    const item = (await u.client.getWallets()).find((x) => sameAddress(x.address, b.address));
    assert.ok(item, "wallet listed");
    assert.equal(item.isHidden, false, "listed isHidden");
  });

  await check("wallets.isolation", async () => {
    const u2 = await getUser2();
    const a = need(w0, "the salt-0 wallet");
    const own = await u2.client.getWallet({ salt: "0" });
    assert.ok(!sameAddress(own.address, a.address), "another owner's salt-0 wallet must differ");
    const list = await u2.client.getWallets();
    assert.ok(!list.some((x) => sameAddress(x.address, a.address)), "another user's wallets must not be listed");
  });
}

// ---------------------------------------------------------------------------
// Flow: tasks
// ---------------------------------------------------------------------------

async function flowTasks() {
  const u = user1;
  const runner = await check("tasks.setup-runner", async () => (await getWalletOf(need(u, "a signed-in user"), "0")).address);
  const tag = randomBytes(3).toString("hex");
  const created = {}; // kind -> { id, props }
  const kinds = ["manual", "block", "cron", "fixedTime", "event"];

  for (const kind of kinds) {
    await check(`tasks.create.${kind}`, async () => {
      need(runner, "the runner wallet");
      const { workflow, props } = buildWorkflow(u.client, {
        name: `interop-${kind}-${tag}`,
        runner,
        trigger: triggerProps(kind, runner),
        nodes: [codeNodeProps(), restNodeProps()],
      });
      const id = await u.client.submitWorkflow(workflow);
      assert.match(id || "", ULID_RE, "task id must be a ULID");
      created[kind] = { id, props };
    });
  }

  for (const kind of kinds) {
    await check(`tasks.get.${kind}`, async () => {
      const { id, props } = need(created[kind], `the ${kind} workflow`);
      const wf = await u.client.getWorkflow(id);
      assert.equal(wf.id, id, "id");
      assert.equal(wf.name, props.name, "name (from settings.name)");
      assert.ok(sameAddress(wf.owner, u.address), `owner ${wf.owner} must be the signed-in EOA`);
      assert.ok(sameAddress(wf.smartWalletAddress, runner), `smartWalletAddress ${wf.smartWalletAddress} must be settings.runner`);
      assert.equal(wf.status, "enabled", "status");
      assert.equal(wf.startAt, props.startAt, "startAt");
      assert.equal(wf.expiredAt, props.expiredAt, "expiredAt");
      assert.equal(wf.maxExecution, props.maxExecution, "maxExecution");
      // trigger
      assert.equal(wf.trigger.type, props.trigger.type, "trigger type");
      assert.equal(wf.trigger.id, props.trigger.id, "trigger id");
      assert.equal(wf.trigger.name, props.trigger.name, "trigger name");
      if (kind === "event") {
        const q = wf.trigger.data?.queries?.[0];
        assert.ok(q, "event trigger query");
        assert.deepEqual(q.addresses.map((a) => a.toLowerCase()), [WATCHED_TOKEN.toLowerCase()], "event addresses");
        assert.deepEqual(q.topics.map((t) => (t === null ? null : t.toLowerCase())), props.trigger.data.queries[0].topics.map((t) => (t === null ? null : t.toLowerCase())), "event topics");
      } else {
        assert.deepEqual(wf.trigger.data, props.trigger.data, "trigger data");
      }
      // nodes and edges
      assert.deepEqual(wf.nodes.map((n) => n.type), [NodeType.CustomCode, NodeType.RestAPI], "node types in order");
      assert.deepEqual(wf.nodes.map((n) => n.id), props.nodes.map((n) => n.id), "node ids");
      assert.deepEqual(wf.nodes.map((n) => n.name), props.nodes.map((n) => n.name), "node names");
      assert.deepEqual(wf.nodes[0].data, { lang: Lang.JavaScript, source: "return 42;" }, "customCode config");
      assert.equal(wf.nodes[1].data.url, "http://127.0.0.1:9/x", "restApi url");
      assert.equal(wf.nodes[1].data.method, "GET", "restApi method");
      assert.deepEqual(
        wf.edges.map((e) => [e.id, e.source, e.target]),
        props.edges.map((e) => [e.id, e.source, e.target]),
        "edges",
      );
      const settings = wf.inputVariables?.settings;
      assert.equal(settings?.name, props.name, "inputVariables.settings.name");
      assert.ok(sameAddress(settings?.runner, runner), "inputVariables.settings.runner");
      assert.deepEqual(wf.inputVariables?.interop, INTEROP_VARIABLE, "inputVariables.interop (every Value kind)");
    });
  }

  const ids = () => kinds.filter((k) => created[k]).map((k) => created[k].id);
  // Counting checks compare with what was created, so they need something created.
  const someCreated = () => need(ids().length > 0, "at least one created workflow");

  await check("tasks.list-paginated", async () => {
    need(runner, "the runner wallet");
    const want = ids();
    assert.equal(want.length, kinds.length, "needs every workflow created");
    const seen = [];
    let after;
    for (let page = 0; page < 10; page++) {
      const res = await u.client.getWorkflows([runner], { limit: 2, ...(after ? { after } : {}) });
      assert.ok(res.items.length <= 2, `page ${page} has ${res.items.length} items, limit was 2`);
      for (const item of res.items) {
        assert.ok(typeof item.name === "string" && item.name.length > 0, "list item name");
        assert.ok(item.trigger && item.trigger.type, "list item trigger");
        seen.push(item.id);
      }
      if (page === 0) assert.equal(res.pageInfo.hasNextPage, true, "first page of 5 with limit 2 must have a next page");
      if (!res.pageInfo.hasNextPage) {
        assert.equal(new Set(seen).size, seen.length, `an id was listed twice: ${seen.join(",")}`);
        assert.deepEqual([...seen].sort(), [...want].sort(), "the pages together must list exactly the created workflows");
        return;
      }
      assert.ok(res.pageInfo.endCursor, "a page with a next page must give endCursor");
      after = res.pageInfo.endCursor;
    }
    throw new Error("more than 10 pages of 2 for 5 workflows");
  });

  await check("tasks.list-trigger-types", async () => {
    someCreated();
    const res = await u.client.getWorkflows([need(runner, "the runner wallet")], { limit: 10 });
    for (const kind of kinds) {
      if (!created[kind]) continue;
      const item = res.items.find((x) => x.id === created[kind].id);
      assert.ok(item, `${kind} workflow listed`);
      assert.equal(item.trigger.type, created[kind].props.trigger.type, `${kind} trigger type in the list`);
      assert.equal(item.status, "enabled", `${kind} status in the list`);
    }
  });

  await check("tasks.list-include-nodes-edges", async () => {
    const res = await u.client.getWorkflows([need(runner, "the runner wallet")], {
      limit: 10,
      includeNodes: true,
      includeEdges: true,
    });
    const item = res.items.find((x) => x.id === need(created.manual, "the manual workflow").id);
    assert.ok(item, "manual workflow listed");
    assert.deepEqual(item.nodes.map((n) => n.type), [NodeType.CustomCode, NodeType.RestAPI], "listed node types");
    assert.equal(item.edges.length, 2, "listed edges");
  });

  await check("tasks.list-other-wallet-empty", async () => {
    const w1 = await getWalletOf(need(u, "a signed-in user"), "1");
    const res = await u.client.getWorkflows([w1.address], { limit: 10 });
    assert.equal(res.items.length, 0, "the salt-1 wallet runs no workflow");
    assert.equal(res.pageInfo.hasNextPage, false, "hasNextPage");
  });

  await check("tasks.count", async () => {
    someCreated();
    const n = await u.client.getWorkflowCount([need(runner, "the runner wallet")]);
    assert.equal(n, ids().length, "GetWorkflowCount");
  });

  await check("tasks.wallet-counters", async () => {
    someCreated();
    need(runner, "the runner wallet");
    const w = await u.client.getWallet({ salt: "0" });
    assert.equal(w.totalTaskCount, ids().length, "totalTaskCount");
    assert.equal(w.enabledTaskCount, ids().length, "enabledTaskCount");
    assert.equal(w.disabledTaskCount, 0, "disabledTaskCount");
    assert.equal(w.completedTaskCount, 0, "completedTaskCount");
    assert.equal(w.failedTaskCount, 0, "failedTaskCount");
  });

  await check("tasks.disable", async () => {
    const { id } = need(created.cron, "the cron workflow");
    const res = await u.client.setWorkflowEnabled(id, false);
    assert.equal(res.success, true, `SetTaskEnabled success (message: ${res.message})`);
    assert.equal(res.id, id, "SetTaskEnabled id");
    const wf = await u.client.getWorkflow(id);
    assert.equal(wf.status, "disabled", "status after disabling");
  });

  await check("tasks.disabled-counters", async () => {
    need(created.cron, "the cron workflow");
    const w = await u.client.getWallet({ salt: "0" });
    assert.equal(w.totalTaskCount, ids().length, "totalTaskCount");
    assert.equal(w.disabledTaskCount, 1, "disabledTaskCount");
    assert.equal(w.enabledTaskCount, ids().length - 1, "enabledTaskCount");
  });

  await check("tasks.disabled-in-list", async () => {
    const res = await u.client.getWorkflows([need(runner, "the runner wallet")], { limit: 10 });
    const item = res.items.find((x) => x.id === need(created.cron, "the cron workflow").id);
    assert.ok(item, "cron workflow listed");
    assert.equal(item.status, "disabled", "listed status");
  });

  await check("tasks.reenable", async () => {
    const { id } = need(created.cron, "the cron workflow");
    const res = await u.client.setWorkflowEnabled(id, true);
    assert.equal(res.success, true, `SetTaskEnabled success (message: ${res.message})`);
    const wf = await u.client.getWorkflow(id);
    assert.equal(wf.status, "enabled", "status after enabling again");
  });

  await check("tasks.delete", async () => {
    const { id } = need(created.fixedTime, "the fixed-time workflow");
    const res = await u.client.deleteWorkflow(id);
    assert.equal(res.success, true, `DeleteTask success (message: ${res.message})`);
    assert.equal(res.id, id, "DeleteTask id");
  });

  await check("tasks.deleted-is-not-found", async () => {
    const { id } = need(created.fixedTime, "the fixed-time workflow");
    await expectError(() => u.client.getWorkflow(id), { codes: [NOT_FOUND], includes: ["task not found"] });
  });

  await check("tasks.count-after-delete", async () => {
    need(created.fixedTime, "the fixed-time workflow");
    const remaining = ids().filter((x) => x !== created.fixedTime.id);
    const n = await u.client.getWorkflowCount([need(runner, "the runner wallet")]);
    assert.equal(n, remaining.length, "GetWorkflowCount");
    const res = await u.client.getWorkflows([runner], { limit: 10 });
    assert.ok(!res.items.some((x) => x.id === created.fixedTime.id), "a deleted workflow must not be listed");
    const w = await u.client.getWallet({ salt: "0" });
    assert.equal(w.totalTaskCount, remaining.length, "totalTaskCount");
  });

  await check("tasks.unknown-id-not-found", async () => {
    await expectError(() => u.client.getWorkflow(ulid()), { codes: [NOT_FOUND], includes: ["task not found"] });
  });

  // A second user must not see nor touch the first user's workflows.
  const notYours = { codes: [NOT_FOUND, PERMISSION_DENIED] };

  await check("tasks.isolation.get", async () => {
    const u2 = await getUser2();
    await expectError(() => u2.client.getWorkflow(need(created.manual, "the manual workflow").id), notYours);
  });

  await check("tasks.isolation.list", async () => {
    need(created.manual, "the manual workflow");
    const u2 = await getUser2();
    need(runner, "the runner wallet");
    let items = [];
    try {
      items = (await u2.client.getWorkflows([runner], { limit: 10 })).items;
    } catch {
      return; // refusing is fine
    }
    assert.equal(items.length, 0, "another user's workflows must not be listed");
  });

  // As the original, these two answer an unknown (or another user's) task in-band.
  await check("tasks.isolation.disable", async () => {
    const u2 = await getUser2();
    const res = await u2.client.setWorkflowEnabled(need(created.manual, "the manual workflow").id, false);
    assert.equal(res.success, false, "success");
    assert.equal(res.status, "not_found", "status");
  });

  await check("tasks.isolation.delete", async () => {
    const u2 = await getUser2();
    const res = await u2.client.deleteWorkflow(need(created.manual, "the manual workflow").id);
    assert.equal(res.success, false, "success");
    assert.equal(res.status, "not_found", "status");
  });

  await check("tasks.isolation.untouched", async () => {
    const wf = await u.client.getWorkflow(need(created.manual, "the manual workflow").id);
    assert.equal(wf.status, "enabled", "status");
  });

  await check("tasks.isolation.foreign-runner-rejected", async () => {
    const u2 = await getUser2();
    need(runner, "the runner wallet");
    const { workflow } = buildWorkflow(u2.client, {
      name: `interop-foreign-${tag}`,
      runner,
      trigger: triggerProps("manual", runner),
      nodes: [codeNodeProps()],
    });
    await expectError(() => u2.client.submitWorkflow(workflow));
  });
}

// ---------------------------------------------------------------------------
// Flow: secrets
// ---------------------------------------------------------------------------

function listSecretsRaw(user, workflowId) {
  const fields = [];
  if (workflowId) fields.push([1, "string", workflowId]);
  fields.push([4, "int64", 100]);
  return rawUnary(user.client, "ListSecrets", encodeMessage(fields), user.authKey);
}

async function flowSecrets() {
  const u = user1;
  const tag = randomBytes(3).toString("hex");
  const userName = `interop_user_${tag}`;
  const wfName = `interop_wf_${tag}`;
  const values = {
    user1: `user-value-${randomBytes(8).toString("hex")}`,
    user2: `user-value-${randomBytes(8).toString("hex")}`,
    wf: `wf-value-${randomBytes(8).toString("hex")}`,
  };

  const workflowId = await check("secrets.setup-workflow", async () => {
    const runner = (await getWalletOf(need(u, "a signed-in user"), "0")).address;
    const { workflow } = buildWorkflow(u.client, {
      name: `interop-secrets-${tag}`,
      runner,
      trigger: triggerProps("manual", runner),
      nodes: [codeNodeProps()],
    });
    return await u.client.submitWorkflow(workflow);
  });

  const userCreated = await check("secrets.create-user-scoped", async () => {
    const res = await need(u, "a signed-in user").client.createSecret(userName, values.user1);
    assert.equal(res.success, true, `success (message: ${res.message})`);
    assert.equal(res.secretName, userName, "secretName");
    return true;
  });

  const wfCreated = await check("secrets.create-workflow-scoped", async () => {
    const res = await u.client.createSecret(wfName, values.wf, { workflowId: need(workflowId, "a workflow") });
    assert.equal(res.success, true, `success (message: ${res.message})`);
    assert.equal(res.secretName, wfName, "secretName");
    return true;
  });

  await check("secrets.list-user-scoped", async () => {
    need(userCreated, "the user-scoped secret");
    const res = await u.client.getSecrets();
    const item = res.items.find((x) => x.name === userName);
    assert.ok(item, `${userName} must be listed`);
    assert.equal(item.workflowId, undefined, "a user-scoped secret has no workflowId");
    assert.equal(item.secret, undefined, "no value");
  });

  await check("secrets.list-workflow-scoped", async () => {
    need(wfCreated, "the workflow-scoped secret");
    const res = await u.client.getSecrets({ workflowId });
    const item = res.items.find((x) => x.name === wfName);
    assert.ok(item, `${wfName} must be listed for its workflow`);
    assert.equal(item.workflowId, workflowId, "workflowId");
  });

  await check("secrets.list-timestamps", async () => {
    need(userCreated, "the user-scoped secret");
    const res = await u.client.getSecrets({ includeTimestamps: true });
    const item = res.items.find((x) => x.name === userName);
    assert.ok(item, `${userName} must be listed`);
    assert.ok(item.createdAt > 0, "createdAt must be set when include_timestamps is true");
  });

  await check("secrets.values-not-on-wire", async () => {
    need(userCreated && wfCreated, "both secrets");
    for (const wid of [undefined, workflowId]) {
      const bytes = await listSecretsRaw(u, wid);
      assert.ok(bytes.includes(Buffer.from(wid ? wfName : userName)), "the raw list must name the secret");
      for (const v of Object.values(values)) {
        assert.ok(!bytes.includes(Buffer.from(v)), "a secret value is in the ListSecrets response");
      }
    }
  });

  await check("secrets.update", async () => {
    need(userCreated, "the user-scoped secret");
    const res = await u.client.updateSecret(userName, values.user2);
    assert.equal(res.success, true, `success (message: ${res.message})`);
    assert.equal(res.secretName, userName, "secretName");
    const bytes = await listSecretsRaw(u);
    assert.ok(!bytes.includes(Buffer.from(values.user2)), "the updated value is in the ListSecrets response");
  });

  await check("secrets.isolation", async () => {
    need(userCreated, "the user-scoped secret");
    const u2 = await getUser2();
    const res = await u2.client.getSecrets();
    assert.ok(!res.items.some((x) => x.name === userName || x.name === wfName), "another user's secrets must not be listed");
  });

  await check("secrets.delete-workflow-scoped", async () => {
    need(wfCreated, "the workflow-scoped secret");
    const res = await u.client.deleteSecret(wfName, { workflowId });
    assert.equal(res.success, true, `success (message: ${res.message})`);
    const after = await u.client.getSecrets({ workflowId });
    assert.ok(!after.items.some((x) => x.name === wfName), "a deleted secret must not be listed");
    const userList = await u.client.getSecrets();
    assert.ok(userList.items.some((x) => x.name === userName), "the other secret must still be listed");
  });

  await check("secrets.delete-user-scoped", async () => {
    need(userCreated, "the user-scoped secret");
    const res = await u.client.deleteSecret(userName);
    assert.equal(res.success, true, `success (message: ${res.message})`);
    const after = await u.client.getSecrets();
    assert.ok(!after.items.some((x) => x.name === userName), "a deleted secret must not be listed");
  });
}

// ---------------------------------------------------------------------------
// Flow: executions (needs the server's task engine)
// ---------------------------------------------------------------------------

function findNodeStep(steps, nodeId) {
  return (steps || []).find((s) => s.id === nodeId);
}

async function flowExecutions() {
  const u = user1;
  const tag = randomBytes(3).toString("hex");
  const code = codeNodeProps("return 42;");

  const wfId = await check("executions.setup-workflow", async () => {
    const runner = (await getWalletOf(need(u, "a signed-in user"), "0")).address;
    const { workflow } = buildWorkflow(u.client, {
      name: `interop-exec-${tag}`,
      runner,
      trigger: triggerProps("manual", runner),
      nodes: [code],
      maxExecution: 100,
    });
    return await u.client.submitWorkflow(workflow);
  });

  const blocking = await check("executions.trigger-blocking", async () => {
    const res = await u.client.triggerWorkflow(
      { id: need(wfId, "the workflow"), triggerData: { type: TriggerType.Manual, data: { n: 1 } }, isBlocking: true },
      { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 1 } },
    );
    assert.match(res.executionId || "", ULID_RE, "executionId must be a ULID");
    assert.equal(res.workflowId, wfId, "workflowId");
    assert.equal(res.status, "success", `status (error: ${res.error})`);
    const step = findNodeStep(res.steps, code.id);
    assert.ok(step, `a step for node ${code.id}; steps: ${safeJson((res.steps || []).map((s) => [s.id, s.type]))}`);
    assert.equal(step.success, true, `step success (error: ${step.error})`);
    // TriggerTask steps are handed out raw (getExecution converts them): the type is
    // the NodeType enum name, the output is CustomCodeNode.Output.AsObject.
    assert.equal(step.type, "NODE_TYPE_CUSTOM_CODE", "raw step type");
    assert.equal(step.output?.data?.numberValue, 42, `step output ${safeJson(step.output)}`);
    return res;
  });

  await check("executions.get-blocking", async () => {
    const ex = await u.client.getExecution(wfId, need(blocking, "the blocking run").executionId);
    assert.equal(ex.id, blocking.executionId, "id");
    assert.equal(ex.status, "success", "status");
    const step = findNodeStep(ex.steps, code.id);
    assert.ok(step, "a step for the node");
    assert.equal(step.type, NodeType.CustomCode, "step type (Execution.Step.type must be the NodeType enum name, NODE_TYPE_CUSTOM_CODE)");
    assert.equal(step.output, 42, `step output ${safeJson(step.output)}`);
    const triggerStep = ex.steps.find((s) => s.type === TriggerType.Manual);
    if (ex.steps.length > 1) assert.ok(triggerStep, "the other step must be the manual trigger (type TRIGGER_TYPE_MANUAL)");
  });

  const asyncRun = await check("executions.trigger-async", async () => {
    const res = await u.client.triggerWorkflow({
      id: need(wfId, "the workflow"),
      triggerData: { type: TriggerType.Manual, data: { n: 2 } },
      isBlocking: false,
    });
    assert.match(res.executionId || "", ULID_RE, "executionId must be a ULID");
    assert.equal(res.status, "pending", "status of a non-blocking trigger");
    return res;
  });

  await check("executions.poll-status", async () => {
    const { executionId } = need(asyncRun, "the async run");
    const deadline = Date.now() + POLL_TIMEOUT_MS;
    let status;
    while (Date.now() < deadline) {
      status = await u.client.getExecutionStatus(wfId, executionId);
      if (status !== "pending") break;
      await sleep(250);
    }
    assert.equal(status, "success", `final status after polling up to ${POLL_TIMEOUT_MS} ms`);
  });

  await check("executions.get-async", async () => {
    const { executionId } = need(asyncRun, "the async run");
    const ex = await u.client.getExecution(wfId, executionId);
    assert.equal(ex.status, "success", "status");
    const step = findNodeStep(ex.steps, code.id);
    assert.ok(step, "a step for the node");
    assert.equal(step.success, true, "step success");
    assert.equal(step.output, 42, `step output ${safeJson(step.output)}`);
  });

  await check("executions.list-paginated", async () => {
    const want = [need(blocking, "the blocking run").executionId, need(asyncRun, "the async run").executionId];
    const seen = [];
    let after;
    for (let page = 0; page < 10; page++) {
      const res = await u.client.getExecutions([wfId], { limit: 1, ...(after ? { after } : {}) });
      assert.ok(res.pageInfo, "pageInfo");
      assert.ok(res.items.length <= 1, "limit 1");
      seen.push(...res.items.map((x) => x.id));
      if (!res.pageInfo.hasNextPage) break;
      assert.ok(res.pageInfo.endCursor, "endCursor");
      after = res.pageInfo.endCursor;
    }
    assert.deepEqual([...seen].sort(), [...want].sort(), "the pages together must list both runs");
  });

  await check("executions.count", async () => {
    need(blocking && asyncRun, "both runs");
    assert.equal(await u.client.getExecutionCount([wfId]), 2, "GetExecutionCount");
  });

  await check("executions.workflow-stats", async () => {
    need(blocking && asyncRun, "both runs");
    const wf = await u.client.getWorkflow(wfId);
    assert.equal(wf.executionCount, 2, "Task.execution_count");
    assert.ok(wf.lastRanAt > 0, "Task.last_ran_at");
  });

  await check("executions.failed-run-reported", async () => {
    const runner = (await getWalletOf(need(u, "a signed-in user"), "0")).address;
    const { workflow } = buildWorkflow(u.client, {
      name: `interop-exec-fail-${tag}`,
      runner,
      trigger: triggerProps("manual", runner),
      nodes: [codeNodeProps('throw new Error("interop boom");')],
      maxExecution: 100,
    });
    const id = await u.client.submitWorkflow(workflow);
    const res = await u.client.triggerWorkflow(
      { id, triggerData: { type: TriggerType.Manual, data: { n: 3 } }, isBlocking: true },
      { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 1 } },
    );
    // The trigger step succeeded and the node failed: the original calls that a partial success.
    assert.equal(res.status, "partialSuccess", "a run whose node throws is reported in-band, not as a gRPC error");
    assert.ok(res.error, "error must say why");
  });

  await check("executions.isolation", async () => {
    const u2 = await getUser2();
    await expectError(() => u2.client.getExecution(need(wfId, "the workflow"), need(blocking, "the blocking run").executionId), {
      codes: [NOT_FOUND, PERMISSION_DENIED],
    });
  });
}

// ---------------------------------------------------------------------------
// Flow: original (what the official client's own tests expect of the original server)
// ---------------------------------------------------------------------------

async function runNode(u, type, data, inputVariables = {}) {
  return await u.client.runNodeWithInputs(
    { node: { id: ulid(), name: "node1", type, data }, inputVariables },
    { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 1 } },
  );
}

async function flowOriginal() {
  const u = user1;
  const tag = randomBytes(3).toString("hex");

  await check("original.require-lodash-dayjs-uuid", async () => {
    const res = await runNode(need(u, "a signed-in user"), NodeType.CustomCode, {
      lang: Lang.JavaScript,
      source: `const _ = require('lodash'); const dayjs = require('dayjs'); const { v4: uuidv4 } = require('uuid');
        return { sum: _.sum(trigger.data.numbers), day: dayjs('2023-12-25').add(7, 'days').format('YYYY-MM-DD'), id: uuidv4() };`,
    }, { trigger: { data: { numbers: [1, 2, 3] } } });
    assert.equal(res.success, true, `success (error: ${res.error})`);
    assert.equal(res.data.sum, 6, "lodash");
    assert.equal(res.data.day, "2024-01-01", "dayjs");
    assert.match(res.data.id, /^[0-9a-f-]{36}$/, "uuid");
    assert.equal(res.executionContext?.isSimulated, false, "executionContext");
  });

  await check("original.es-import", async () => {
    const res = await runNode(need(u, "a signed-in user"), NodeType.CustomCode, {
      lang: Lang.JavaScript,
      source: "import _ from 'lodash';\nreturn _.max([4, 8, 1]);",
    });
    assert.equal(res.success, true, `success (error: ${res.error})`);
    assert.equal(res.data, 8);
  });

  await check("original.code-template-and-last-expression", async () => {
    const res = await runNode(need(u, "a signed-in user"), NodeType.CustomCode, {
      lang: Lang.JavaScript,
      source: "const base = {{ trigger.data.n }}; base * 2",
    }, { trigger: { data: { n: 21 } } });
    assert.equal(res.success, true, `success (error: ${res.error})`);
    assert.equal(res.data, 42);
  });

  await check("original.missing-source-in-band", async () => {
    const res = await runNode(need(u, "a signed-in user"), NodeType.CustomCode, { lang: Lang.JavaScript, source: "" });
    assert.equal(res.success, false, "success");
    assert.equal(res.errorCode, 3006, `errorCode (error: ${res.error})`);
  });

  await check("original.mock-host-rest", async () => {
    const res = await runNode(need(u, "a signed-in user"), NodeType.RestAPI, {
      url: "https://mock-api.ap-aggregator.local/status/404",
      method: "GET",
      headers: {},
      body: "",
    });
    assert.equal(res.success, false, "a 404 fails the node");
    assert.ok(res.error.includes("404"), `error: ${res.error}`);
  });

  await check("original.partial-success", async () => {
    const runner = (await getWalletOf(need(u, "a signed-in user"), "0")).address;
    const ok = codeNodeProps("return 1;");
    const boom = codeNodeProps("throw new Error('on purpose');");
    boom.name = "boom";
    const after = codeNodeProps("return 2;");
    after.name = "after";
    const { workflow } = buildWorkflow(u.client, {
      name: `interop-partial-${tag}`,
      runner,
      trigger: triggerProps("manual", runner),
      nodes: [ok, boom, after],
      maxExecution: 10,
    });
    const id = await u.client.submitWorkflow(workflow);
    const res = await u.client.triggerWorkflow(
      { id, triggerData: { type: TriggerType.Manual, data: { n: 1 } }, isBlocking: true },
      { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 1 } },
    );
    assert.equal(res.status, "partialSuccess", `status (error: ${res.error})`);
    assert.ok(findNodeStep(res.steps, after.id), "the failed node's successor ran");
  });

  await check("original.token-metadata-native", async () => {
    const res = await need(u, "a signed-in user").client.getTokenMetadata({ address: "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE" });
    assert.equal(res.found, true, "found");
    assert.equal(res.token?.symbol, "ETH", `token ${safeJson(res.token)}`);
    assert.equal(res.token?.decimals, 18, "decimals");
  });

  // What the official client reads of RunTrigger, per kind of trigger (no chain here: block
  // triggers are checked in the onchain flow).
  await check("original.run-trigger-manual", async () => {
    const data = { n: 7, who: "interop" };
    const res = await need(u, "a signed-in user").client.runTrigger({
      trigger: { id: ulid(), name: "manualTrigger", type: TriggerType.Manual, data: { data, lang: Lang.JSON } },
    });
    assert.equal(res.success, true, `success (error: ${res.error})`);
    assert.deepEqual(res.data, data, `data ${safeJson(res.data)}`);
    assert.equal(typeof res.executionContext?.chainId, "number", `executionContext ${safeJson(res.executionContext)}`);
    assert.equal(res.executionContext.chainId, CHAIN_ID, "chainId");
  });

  for (const kind of ["cron", "fixedTime"]) {
    await check(`original.run-trigger-${kind}`, async () => {
      const before = Date.now();
      const res = await need(u, "a signed-in user").client.runTrigger({ trigger: triggerProps(kind) });
      assert.equal(res.success, true, `success (error: ${res.error})`);
      assert.equal(typeof res.data?.timestamp, "number", `data ${safeJson(res.data)}`);
      assert.ok(res.data.timestamp >= before - 1000, `timestamp ${res.data.timestamp} is now, in ms`);
      assert.match(res.data.timestampIso, ISO_MS_RE, "timestampIso");
      assert.equal(new Date(res.data.timestampIso).getTime(), res.data.timestamp, "the same instant");
    });
  }

  await check("original.run-trigger-invalid-in-band", async () => {
    const trigger = { id: ulid(), name: "cronTrigger", type: TriggerType.Cron, data: { schedules: ["not a schedule"] } };
    const res = await need(u, "a signed-in user").client.runTrigger({ trigger });
    assert.equal(res.success, false, "success");
    assert.ok(res.error.length > 0, "error");
    assert.equal(typeof res.errorCode, "number", `errorCode (error: ${res.error})`);
    assert.equal(res.data, null, `data ${safeJson(res.data)}`);
  });

  await check("original.simulate-invalid-node-in-band", async () => {
    const runner = (await getWalletOf(need(u, "a signed-in user"), "0")).address;
    const empty = codeNodeProps("");
    const { props } = buildWorkflow(u.client, {
      name: `interop-sim-${tag}`,
      runner,
      trigger: triggerProps("manual", runner),
      nodes: [empty],
    });
    const res = await u.client.simulateWorkflow({
      trigger: props.trigger,
      nodes: props.nodes,
      edges: props.edges,
      inputVariables: props.inputVariables,
    });
    assert.match(res.id, ULID_RE, `a real execution id: ${res.id}`);
    // The original counts the trigger step among the steps: one failed node of two steps is a
    // partial success, not a failure.
    assert.equal(res.status, "partialSuccess", `status (error: ${res.error})`);
    const step = findNodeStep(res.steps, empty.id);
    assert.ok(step, `a step for the refused node: ${safeJson(res.steps)}`);
    assert.equal(step.success, false, "step success");
    assert.equal(step.errorCode, 3006, `step errorCode (error: ${step.error})`);
  });

  await check("original.step-execution-context", async () => {
    const runner = (await getWalletOf(need(u, "a signed-in user"), "0")).address;
    const code = codeNodeProps("return 1;");
    const { props } = buildWorkflow(u.client, {
      name: `interop-ctx-${tag}`,
      runner,
      trigger: triggerProps("manual", runner),
      nodes: [code],
    });
    const res = await u.client.simulateWorkflow({
      trigger: props.trigger,
      nodes: props.nodes,
      edges: props.edges,
      inputVariables: props.inputVariables,
    });
    const step = findNodeStep(res.steps, code.id);
    assert.ok(step, `a step for the node: ${safeJson(res.steps)}`);
    const ctx = step.executionContext;
    assert.equal(typeof ctx?.chainId, "number", `executionContext ${safeJson(ctx)}`);
    assert.equal(ctx.chainId, CHAIN_ID, "chainId");
    const ran = await runNode(u, NodeType.CustomCode, { lang: Lang.JavaScript, source: "return 1;" });
    assert.equal(typeof ran.executionContext?.chainId, "number", `runNode executionContext ${safeJson(ran.executionContext)}`);
  });

  // The original's words lead our errors, where clients match on them.
  await check("original.error-words", async () => {
    const c = need(u, "a signed-in user").client;
    await expectError(() => c.createSecret(`ap_interop_${tag}`, "x"), {
      codes: [3],
      includes: ["secret name cannot start with ap_"],
    });
    await expectError(() => c.getWorkflows([ethers.Wallet.createRandom().address], { limit: 1 }), {
      codes: [3],
      includes: ["invalid smart account address"],
    });
  });

  await check("original.secret-upsert-and-delete-without-workflow", async () => {
    const c = need(u, "a signed-in user").client;
    const name = `interop_orig_${tag}`;
    const workflowId = ulid();
    assert.equal((await c.createSecret(name, "a", { workflowId })).success, true, "create");
    assert.equal((await c.createSecret(name, "b", { workflowId })).success, true, "create again: an upsert");
    const res = await c.deleteSecret(name);
    assert.equal(res.success, true, `delete without workflowId (message: ${res.message})`);
  });
}

// ---------------------------------------------------------------------------
// Flow: onchain (needs a server on a chain with the wallet contracts, and a funded wallet)
// ---------------------------------------------------------------------------

const TOKEN_ABI = [
  {
    type: "function",
    name: "transfer",
    stateMutability: "nonpayable",
    inputs: [
      { name: "to", type: "address" },
      { name: "amount", type: "uint256" },
    ],
    outputs: [{ name: "", type: "bool" }],
  },
];

function tokenTransferProps(token, recipient, amount, isSimulated) {
  const data = {
    contractAddress: token,
    contractAbi: TOKEN_ABI,
    methodCalls: [{ methodName: "transfer", methodParams: [recipient, String(amount)] }],
  };
  if (isSimulated !== undefined) data.isSimulated = isSimulated;
  return { id: ulid(), name: "pay_token", type: "contractWrite", data };
}

async function signInWith(label, privateKey) {
  const wallet = new ethers.Wallet(privateKey);
  const client = newClient();
  clients.push(client);
  const { message } = await client.getSignatureFormat(wallet.address);
  const signature = await wallet.signMessage(message);
  const { authKey } = await client.authWithSignature({ message, signature });
  client.setAuthKey(authKey);
  return { label, wallet, address: wallet.address, client, authKey, message };
}

async function flowOnchain() {
  const key = (process.env.ONCHAIN_KEY || "").trim();
  const token = (process.env.ONCHAIN_TOKEN || "").trim();
  const recipient = (process.env.ONCHAIN_RECIPIENT || "").trim();
  if (!key || !ADDRESS_RE.test(token) || !ADDRESS_RE.test(recipient)) {
    fail("onchain.config", "ONCHAIN_KEY, ONCHAIN_TOKEN and ONCHAIN_RECIPIENT are required");
    return;
  }
  const u = await check("onchain.signin", () => signInWith("onchain", key));
  if (!u) return;
  const runner = await check("onchain.wallet", async () => {
    const w = await u.client.getWallet({ salt: "0" });
    assert.match(w.address || "", ADDRESS_RE, "wallet address");
    return w.address;
  });
  if (!runner) return;
  const settings = { settings: { runner, chain_id: CHAIN_ID, name: "interop-onchain" } };

  // Before any write: the wallet holds what the test minted.
  await check("onchain.contract-read", async () => {
    const res = await u.client.runNodeWithInputs({
      node: {
        id: ulid(),
        name: "read_token",
        type: "contractRead",
        data: {
          contractAddress: token,
          contractAbi: [
            {
              type: "function",
              name: "balanceOf",
              stateMutability: "view",
              inputs: [{ name: "owner", type: "address" }],
              outputs: [{ name: "", type: "uint256" }],
            },
          ],
          methodCalls: [{ methodName: "balanceOf", methodParams: [runner] }],
        },
      },
      inputVariables: settings,
    });
    assert.equal(res.success, true, `success (error: ${res.error})`);
    assert.deepEqual(res.data, { balanceOf: "100" }, `data ${safeJson(res.data)}`);
    assert.ok(Array.isArray(res.metadata) && res.metadata.length === 1, `metadata ${safeJson(res.metadata)}`);
    assert.equal(res.metadata[0].methodName, "balanceOf", "metadata methodName");
    assert.equal(res.metadata[0].success, true, "metadata success");
    assert.equal(typeof res.executionContext?.chainId, "number", `executionContext ${safeJson(res.executionContext)}`);
  });

  await check("onchain.run-trigger-block", async () => {
    const res = await u.client.runTrigger({ trigger: triggerProps("block") });
    assert.equal(res.success, true, `success (error: ${res.error})`);
    const b = res.data || {};
    assert.equal(typeof b.blockNumber, "number", `data ${safeJson(b)}`);
    assert.match(b.blockHash, /^0x[0-9a-f]{64}$/, "blockHash");
    assert.match(b.parentHash, /^0x[0-9a-f]{64}$/, "parentHash");
    assert.equal(typeof b.timestamp, "number", "timestamp");
    assert.equal(typeof b.gasLimit, "number", "gasLimit");
    assert.equal(typeof b.gasUsed, "number", "gasUsed");
    assert.ok(b.difficulty !== undefined, "difficulty");
  });

  await check("onchain.run-node-simulated", async () => {
    const res = await u.client.runNodeWithInputs({
      node: tokenTransferProps(token, recipient, 1),
      inputVariables: settings,
    });
    assert.equal(res.success, true, `success (error: ${res.error})`);
    assert.equal(res.executionContext?.isSimulated, true, `executionContext ${safeJson(res.executionContext)}`);
  });

  await check("onchain.run-node-sent", async () => {
    const res = await u.client.runNodeWithInputs(
      { node: tokenTransferProps(token, recipient, 2, false), inputVariables: settings },
      { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 0 } },
    );
    assert.equal(res.success, true, `success (error: ${res.error})`);
    assert.equal(res.executionContext?.isSimulated, false, `executionContext ${safeJson(res.executionContext)}`);
  });

  await check("onchain.workflow-contract-write", async () => {
    const write = tokenTransferProps(token, recipient, 5);
    const { workflow } = buildWorkflow(u.client, {
      name: `interop-onchain-${randomBytes(3).toString("hex")}`,
      runner,
      trigger: triggerProps("manual", runner),
      nodes: [write],
      maxExecution: 10,
    });
    const id = await u.client.submitWorkflow(workflow);
    const res = await u.client.triggerWorkflow(
      { id, triggerData: { type: TriggerType.Manual, data: { n: 1 } }, isBlocking: true },
      { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 0 } },
    );
    assert.equal(res.status, "success", `status (error: ${res.error})`);
    const ex = await u.client.getExecution(id, res.executionId);
    const step = findNodeStep(ex.steps, write.id);
    assert.ok(step, "a step for the write");
    assert.equal(step.success, true, `step success (error: ${step.error})`);
    assert.ok(Number(step.gasUsed) > 0, `gasUsed ${step.gasUsed}`);
  });

  await check("onchain.withdraw-eth", async () => {
    const res = await u.client.withdrawFunds(
      { recipientAddress: recipient, amount: "4321", token: "ETH", smartWalletAddress: runner },
      { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 0 } },
    );
    assert.equal(res.success, true, `success (${res.message})`);
    assert.equal(res.status, "confirmed", "status");
    assert.match(res.userOpHash || "", /^0x[0-9a-f]{64}$/, "userOpHash");
    assert.equal(res.amount, "4321", "amount");
  });

  await check("onchain.withdraw-token", async () => {
    const res = await u.client.withdrawFunds(
      { recipientAddress: recipient, amount: "7", token, smartWalletAddress: runner },
      { timeout: { timeout: BLOCKING_TIMEOUT_MS, retries: 0 } },
    );
    assert.equal(res.status, "confirmed", `status (${res.message})`);
  });

  await check("onchain.withdraw-invalid-amount", async () => {
    await expectError(
      () => u.client.withdrawFunds({ recipientAddress: recipient, amount: "-1", token: "ETH", smartWalletAddress: runner }),
      { includes: ["invalid amount: must be a positive integer"] },
    );
  });

  await check("onchain.estimate-fees", async () => {
    const now = Date.now();
    const write = tokenTransferProps(token, recipient, 1);
    const res = await u.client.estimateFees({
      trigger: triggerProps("manual", runner),
      nodes: [write],
      runner,
      createdAt: now,
      expireAt: now + 3600 * 1000,
    });
    assert.equal(res.chainId, String(CHAIN_ID), `chainId (error: ${res.error})`);
    assert.equal(res.cogs.length, 1, `cogs ${safeJson(res.cogs)}`);
    assert.equal(res.cogs[0].nodeId, write.id, "cogs node");
    assert.ok(BigInt(res.cogs[0].gasUnits) > 21000n, `gasUnits ${res.cogs[0].gasUnits}`);
    assert.ok(Array.isArray(res.discounts) && Array.isArray(res.warnings), "arrays");
    assert.equal(res.executionFee?.unit, "USD", "executionFee");
  });
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

async function main() {
  if (!ENDPOINT) {
    fail("config", "AGGREGATOR_ENDPOINT (host:port) is required");
    return;
  }
  const unknown = FLOWS.filter((f) => !ALL_FLOWS.includes(f));
  if (unknown.length > 0) {
    fail("config", `unknown flow(s) ${unknown.join(",")}; known: ${ALL_FLOWS.join(",")}`);
    return;
  }
  if (!Number.isInteger(CHAIN_ID) || CHAIN_ID <= 0) {
    fail("config", `CHAIN_ID must be a positive integer, got ${process.env.CHAIN_ID}`);
    return;
  }
  console.log(`# endpoint ${ENDPOINT}, chain id ${CHAIN_ID}, flows ${FLOWS.join(",")}, call timeout ${CALL_TIMEOUT_MS} ms`);

  user1 = (await check("auth.signin", () => signIn("user1"))) || NO_USER;

  if (FLOWS.includes("auth")) await flowAuth();
  if (FLOWS.includes("wallets")) await flowWallets();
  if (FLOWS.includes("tasks")) await flowTasks();
  if (FLOWS.includes("secrets")) await flowSecrets();
  if (FLOWS.includes("executions")) await flowExecutions();
  if (FLOWS.includes("original")) await flowOriginal();
  if (FLOWS.includes("onchain")) await flowOnchain();
}

main()
  .catch((e) => fail("main", describeError(e)))
  .finally(() => {
    clearTimeout(watchdog);
    for (const c of clients) {
      try {
        c.rpcClient.close();
      } catch {
        // ignore
      }
    }
    finish();
  });
