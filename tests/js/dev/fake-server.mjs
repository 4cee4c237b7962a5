// DEVELOPMENT AID ONLY: an in-memory fake of the aggregator's client-facing gRPC
// service, used to check that interop.mjs itself works (its flows, its parsing of
// the sdk's answers) before our Rust server can answer. It is NOT a reference for
// the server's behaviour: where it and client-behaviour.md / avs.proto differ, they
// win. Wallet addresses are made up (a hash of owner and salt, no CREATE2), custom
// code runs in node:vm, REST nodes are not run, nothing is persisted.
//
//   node dev/fake-server.mjs [port]     (default 2206; CHAIN_ID env, default 31337)
//
// It loads /work/main/proto/avs.proto (../../../proto/avs.proto from this file) and
// prints `listening <port>` and an API key (`api-key <jwt>`) it accepts.

import path from "node:path";
import vm from "node:vm";
import { createHmac, randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { ethers } from "ethers";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO = path.resolve(here, "../../../proto/avs.proto");
const PORT = Number(process.argv[2] || 2206);
const CHAIN_ID = Number(process.env.CHAIN_ID || 31337);
const SECRET = randomBytes(32);
const DEFAULT_FACTORY = "0x29adA1b5217242DEaBB142BC3b1bCfFdd56008e7";

const def = protoLoader.loadSync(PROTO, {
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: true,
  oneofs: true,
});
const proto = grpc.loadPackageDefinition(def).aggregator;

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
// Monotonic ULIDs: the random part of ids made in the same millisecond counts up.
let lastTime = -1;
let counter = 0n;
function ulid() {
  const now = Date.now();
  if (now !== lastTime) {
    lastTime = now;
    counter = BigInt("0x" + randomBytes(9).toString("hex")) >> 2n; // 70 bits, room to count up
  } else {
    counter += 1n;
  }
  let t = now;
  let time = "";
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  let c = counter;
  let rand = "";
  for (let i = 0; i < 16; i++) {
    rand = CROCKFORD[Number(c % 32n)] + rand;
    c /= 32n;
  }
  return time + rand;
}

function b64url(buf) {
  return Buffer.from(buf).toString("base64url");
}
function signJwt(claims) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = b64url(createHmac("sha256", SECRET).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}
function verifyJwt(token) {
  const parts = String(token || "").split(".");
  if (parts.length !== 3) throw new Error("malformed token");
  const sig = b64url(createHmac("sha256", SECRET).update(`${parts[0]}.${parts[1]}`).digest());
  if (sig !== parts[2]) throw new Error("bad signature");
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  if (!(claims.exp > Date.now() / 1000)) throw new Error("expired");
  return claims;
}

function err(code, details) {
  return Object.assign(new Error(details), { code, details });
}
const C = grpc.status;

// google.protobuf.Value comes from protobufjs's built-in descriptor, whose field
// names are camelCase even with keepCase (numberValue, structValue, ...).
function valueToJs(v) {
  if (!v || !v.kind) return null;
  switch (v.kind) {
    case "nullValue":
      return null;
    case "numberValue":
      return v.numberValue;
    case "stringValue":
      return v.stringValue;
    case "boolValue":
      return v.boolValue;
    case "structValue":
      return Object.fromEntries(Object.entries(v.structValue.fields || {}).map(([k, x]) => [k, valueToJs(x)]));
    case "listValue":
      return (v.listValue.values || []).map(valueToJs);
    default:
      return null;
  }
}
function jsToValue(x) {
  if (x === null || x === undefined) return { nullValue: 0 };
  if (typeof x === "number") return { numberValue: x };
  if (typeof x === "string") return { stringValue: x };
  if (typeof x === "boolean") return { boolValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map(jsToValue) } };
  return { structValue: { fields: Object.fromEntries(Object.entries(x).map(([k, v]) => [k, jsToValue(v)])) } };
}

const lc = (s) => String(s || "").toLowerCase();

// ---------------------------------------------------------------------------
// state
// ---------------------------------------------------------------------------

const wallets = new Map(); // owner(lc) -> Map(salt -> wallet)
const tasks = new Map(); // id -> task
const executions = new Map(); // id -> { taskId, owner, execution }
const secrets = new Map(); // `${owner}|${workflow}|${name}` -> secret

function walletsOf(owner) {
  if (!wallets.has(lc(owner))) wallets.set(lc(owner), new Map());
  return wallets.get(lc(owner));
}
function walletFor(owner, salt, factory) {
  const ws = walletsOf(owner);
  if (!ws.has(salt)) {
    const h = ethers.keccak256(ethers.toUtf8Bytes(`${lc(owner)}|${salt}|${lc(factory)}`));
    ws.set(salt, { address: ethers.getAddress("0x" + h.slice(-40)), salt, factory, is_hidden: false });
  }
  return ws.get(salt);
}
function counters(owner, address) {
  const mine = [...tasks.values()].filter((t) => t.owner === ethers.getAddress(owner) && lc(t.smart_wallet_address) === lc(address));
  const by = (s) => mine.filter((t) => t.status === s).length;
  return {
    total_task_count: mine.length,
    enabled_task_count: by(0),
    completed_task_count: by(1),
    failed_task_count: by(2),
    disabled_task_count: by(5),
  };
}

// ---------------------------------------------------------------------------
// handlers
// ---------------------------------------------------------------------------

function authed(fn) {
  return (call, cb) => {
    let claims;
    try {
      claims = verifyJwt(call.metadata.get("authkey")[0]);
    } catch (e) {
      cb(err(C.UNAUTHENTICATED, `User authentication error: ${e.message}`));
      return;
    }
    Promise.resolve()
      .then(() => fn(call.request, claims.sub))
      .then((r) => cb(null, r), (e) => cb(e.code ? e : err(C.INTERNAL, e.message)));
  };
}

function ownTask(id, owner) {
  const t = tasks.get(id);
  if (!t || t.owner !== owner) throw err(C.NOT_FOUND, "task not found");
  return t;
}

function taskOut(t, { nodes = true, edges = true } = {}) {
  const { owner, ...rest } = t;
  return { ...rest, owner, nodes: nodes ? t.nodes : [], edges: edges ? t.edges : [] };
}

function runTask(t, exec, triggerOutput) {
  const steps = [
    {
      id: t.trigger.id,
      type: "TRIGGER_TYPE_MANUAL",
      name: t.trigger.name,
      success: true,
      manual_trigger: { data: triggerOutput?.data || { nullValue: 0 } },
      start_at: Date.now(),
      end_at: Date.now(),
    },
  ];
  let ok = true;
  let error = "";
  for (const n of t.nodes) {
    const start = Date.now();
    const step = { id: n.id, name: n.name, type: "", start_at: start };
    if (n.custom_code) {
      step.type = "NODE_TYPE_CUSTOM_CODE";
      try {
        const out = vm.runInNewContext(`(function(){${n.custom_code.config.source}})()`, {}, { timeout: 1000 });
        step.success = true;
        step.custom_code = { data: jsToValue(out) };
      } catch (e) {
        step.success = false;
        step.error = String(e.message);
      }
    } else {
      step.type = "NODE_TYPE_REST_API";
      step.success = false;
      step.error = "the fake server does not run REST nodes";
    }
    step.end_at = Date.now();
    steps.push(step);
    if (!step.success) {
      ok = false;
      error = step.error;
      break;
    }
  }
  Object.assign(exec, { status: ok ? 2 : 3, error, steps, end_at: Date.now() });
  t.execution_count += 1;
  t.last_ran_at = Date.now();
}

const handlers = {
  GetSignatureFormat(call, cb) {
    const now = Date.now();
    cb(null, {
      message: [
        "Please sign the below text for ownership verification.",
        "",
        "URI: https://app.avaprotocol.org",
        `Chain ID: ${CHAIN_ID}`,
        "Version: fake-0",
        `Issued At: ${new Date(now).toISOString()}`,
        `Expire At: ${new Date(now + 24 * 3600e3).toISOString()}`,
        `Wallet: ${call.request.wallet}`,
      ].join("\n"),
    });
  },

  GetKey(call, cb) {
    try {
      const { message, signature } = call.request;
      const f = {};
      for (const line of message.split("\n")) {
        const i = line.indexOf(": ");
        if (i > 0) f[line.slice(0, i)] = line.slice(i + 2);
      }
      for (const k of ["Chain ID", "Version", "Issued At", "Expire At", "Wallet"]) {
        if (!f[k]) throw err(C.INVALID_ARGUMENT, `missing ${k}`);
      }
      if (Number(f["Chain ID"]) !== CHAIN_ID) throw err(C.INVALID_ARGUMENT, "wrong chain id");
      const exp = Date.parse(f["Expire At"]);
      if (!(exp > Date.now())) throw err(C.INVALID_ARGUMENT, "message expired");
      if (signature.includes(".")) {
        const k = verifyJwt(signature);
        if (!k.roles?.includes("admin")) throw err(C.UNAUTHENTICATED, "not an admin key");
      } else {
        const signer = ethers.verifyMessage(message, signature);
        if (lc(signer) !== lc(f["Wallet"])) throw err(C.UNAUTHENTICATED, "invalid signature");
      }
      const sub = ethers.getAddress(f["Wallet"]);
      const expSec = Math.floor(exp / 1000);
      cb(null, { key: signJwt({ iss: "AvaProtocol", sub, aud: [String(CHAIN_ID)], exp: expSec }), address: sub, expiry: expSec });
    } catch (e) {
      cb(e.code ? e : err(C.UNAUTHENTICATED, e.message));
    }
  },

  GetWallet: authed((req, owner) => {
    const factory = req.factory_address || DEFAULT_FACTORY;
    if (!/^0x[0-9a-fA-F]{40}$/.test(factory)) throw err(C.INVALID_ARGUMENT, "invalid factory address");
    if (!/^\d+$/.test(req.salt)) throw err(C.INVALID_ARGUMENT, "invalid salt value: must be a non-negative integer");
    const w = walletFor(owner, req.salt, factory);
    return { address: w.address, salt: w.salt, factory_address: w.factory, is_hidden: w.is_hidden, ...counters(owner, w.address) };
  }),

  SetWallet: authed((req, owner) => {
    const w = walletsOf(owner).get(req.salt);
    if (!w) throw err(C.NOT_FOUND, "wallet not found");
    w.is_hidden = req.is_hidden;
    return { address: w.address, salt: w.salt, factory_address: w.factory, is_hidden: w.is_hidden, ...counters(owner, w.address) };
  }),

  ListWallets: authed((_req, owner) => {
    walletFor(owner, "0", DEFAULT_FACTORY);
    return { items: [...walletsOf(owner).values()] };
  }),

  CreateTask: authed((req, owner) => {
    const settings = valueToJs(req.input_variables?.settings) || {};
    if (!settings.name || !settings.runner) throw err(C.INVALID_ARGUMENT, "settings.name and settings.runner are required");
    const mine = [...walletsOf(owner).values()].some((w) => lc(w.address) === lc(settings.runner));
    if (!mine) throw err(C.INVALID_ARGUMENT, "invalid smart wallet address");
    if (!req.trigger?.trigger_type) throw err(C.INVALID_ARGUMENT, "trigger is required");
    const id = ulid();
    tasks.set(id, {
      id,
      owner: ethers.getAddress(owner),
      smart_wallet_address: settings.runner,
      start_at: req.start_at,
      expired_at: req.expired_at,
      name: settings.name,
      completed_at: 0,
      max_execution: req.max_execution,
      execution_count: 0,
      last_ran_at: 0,
      status: 0,
      trigger: req.trigger,
      nodes: req.nodes,
      edges: req.edges,
      input_variables: req.input_variables,
    });
    return { id };
  }),

  GetTask: authed((req, owner) => taskOut(ownTask(req.id, owner))),

  ListTasks: authed((req, owner) => {
    const addrs = req.smart_wallet_address.map(lc);
    let items = [...tasks.values()]
      .filter((t) => t.owner === owner && addrs.includes(lc(t.smart_wallet_address)))
      .sort((a, b) => (a.id < b.id ? 1 : -1));
    if (req.after) items = items.filter((t) => t.id < req.after);
    const limit = req.limit > 0 ? req.limit : 10;
    const page = items.slice(0, limit);
    return {
      items: page.map((t) => taskOut(t, { nodes: req.include_nodes, edges: req.include_edges })),
      page_info: {
        start_cursor: page[0]?.id || "",
        end_cursor: page[page.length - 1]?.id || "",
        has_previous_page: Boolean(req.after),
        has_next_page: items.length > limit,
      },
    };
  }),

  SetTaskEnabled: authed((req, owner) => {
    const t = ownTask(req.id, owner);
    const prev = t.status;
    t.status = req.enabled ? 0 : 5;
    return { success: true, status: req.enabled ? "enabled" : "disabled", id: t.id, previous_status: String(prev), updated_at: Date.now() };
  }),

  DeleteTask: authed((req, owner) => {
    const t = ownTask(req.id, owner);
    tasks.delete(t.id);
    return { success: true, status: "deleted", id: t.id, deleted_at: Date.now() };
  }),

  GetWorkflowCount: authed((req, owner) => {
    const addrs = req.addresses.map(lc);
    return { total: [...tasks.values()].filter((t) => t.owner === owner && (addrs.length === 0 || addrs.includes(lc(t.smart_wallet_address)))).length };
  }),

  TriggerTask: authed((req, owner) => {
    const t = ownTask(req.task_id, owner);
    const exec = { id: ulid(), start_at: Date.now(), end_at: 0, status: 1, error: "", steps: [], index: t.execution_count };
    executions.set(exec.id, { taskId: t.id, owner, execution: exec });
    if (req.is_blocking) {
      runTask(t, exec, req.manual_trigger);
      const resp = { execution_id: exec.id, status: exec.status, workflow_id: t.id, start_at: exec.start_at, end_at: exec.end_at, steps: exec.steps };
      if (exec.error) resp.error = exec.error;
      return resp;
    }
    setTimeout(() => runTask(t, exec, req.manual_trigger), 300);
    return { execution_id: exec.id, status: 1, workflow_id: t.id, start_at: exec.start_at };
  }),

  GetExecution: authed((req, owner) => {
    const e = executions.get(req.execution_id);
    if (!e || e.owner !== owner || e.taskId !== req.task_id) throw err(C.NOT_FOUND, "execution not found");
    return e.execution;
  }),

  GetExecutionStatus: authed((req, owner) => {
    const e = executions.get(req.execution_id);
    if (!e || e.owner !== owner || e.taskId !== req.task_id) throw err(C.NOT_FOUND, "execution not found");
    return { status: e.execution.status };
  }),

  ListExecutions: authed((req, owner) => {
    let items = [...executions.values()]
      .filter((e) => e.owner === owner && req.task_ids.includes(e.taskId))
      .map((e) => e.execution)
      .sort((a, b) => (a.id < b.id ? 1 : -1));
    if (req.after) items = items.filter((x) => x.id < req.after);
    const limit = req.limit > 0 ? req.limit : 10;
    const page = items.slice(0, limit);
    return {
      items: page,
      page_info: {
        start_cursor: page[0]?.id || "",
        end_cursor: page[page.length - 1]?.id || "",
        has_previous_page: Boolean(req.after),
        has_next_page: items.length > limit,
      },
    };
  }),

  GetExecutionCount: authed((req, owner) => ({
    total: [...executions.values()].filter((e) => e.owner === owner && req.workflow_ids.includes(e.taskId)).length,
  })),

  CreateSecret: authed((req, owner) => {
    if (req.workflow_id) ownTask(req.workflow_id, owner);
    const key = `${owner}|${req.workflow_id}|${req.name}`;
    if (secrets.has(key)) throw err(C.ALREADY_EXISTS, "secret already exists");
    const now = Date.now();
    secrets.set(key, { owner, name: req.name, value: req.secret, workflow_id: req.workflow_id, created_at: now, updated_at: now });
    return { success: true, status: "created", created_at: now, secret_name: req.name, scope: req.workflow_id ? "workflow" : "user" };
  }),

  UpdateSecret: authed((req, owner) => {
    const s = secrets.get(`${owner}|${req.workflow_id}|${req.name}`);
    if (!s) throw err(C.NOT_FOUND, "secret not found");
    s.value = req.secret;
    s.updated_at = Date.now();
    return { success: true, status: "updated", updated_at: s.updated_at, secret_name: s.name, scope: s.workflow_id ? "workflow" : "user" };
  }),

  ListSecrets: authed((req, owner) => {
    const items = [...secrets.values()]
      .filter((s) => s.owner === owner && (!req.workflow_id || s.workflow_id === req.workflow_id))
      .map((s) => ({
        name: s.name,
        scope: s.workflow_id ? "workflow" : "user",
        workflow_id: s.workflow_id,
        created_at: req.include_timestamps ? s.created_at : 0,
        updated_at: req.include_timestamps ? s.updated_at : 0,
      }));
    return { items, page_info: { start_cursor: "", end_cursor: "", has_previous_page: false, has_next_page: false } };
  }),

  DeleteSecret: authed((req, owner) => {
    const key = `${owner}|${req.workflow_id}|${req.name}`;
    if (!secrets.has(key)) throw err(C.NOT_FOUND, "secret not found");
    secrets.delete(key);
    return { success: true, status: "deleted", deleted_at: Date.now(), secret_name: req.name, scope: req.workflow_id ? "workflow" : "user" };
  }),
};

// Every other method of the service answers UNIMPLEMENTED.
const impl = {};
for (const name of Object.keys(proto.Aggregator.service)) {
  impl[name] = handlers[name] || ((_call, cb) => cb(err(C.UNIMPLEMENTED, `${name} is not in the fake server`)));
}

const server = new grpc.Server();
server.addService(proto.Aggregator.service, impl);
server.bindAsync(`127.0.0.1:${PORT}`, grpc.ServerCredentials.createInsecure(), (e, port) => {
  if (e) {
    console.error(e.message);
    process.exit(1);
  }
  console.log(`listening ${port}`);
  console.log(`api-key ${signJwt({ iss: "AvaProtocol", sub: "fake-admin", roles: ["admin"], exp: Math.floor(Date.now() / 1000) + 3600 })}`);
});
