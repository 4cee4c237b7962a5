// Checks our checkpoints and inclusion proofs with Sigstore's JavaScript verifier
// (@sigstore/verify, the code npm uses to check package provenance against Rekor), which knows
// nothing of this project. Reads cases as JSON on stdin and prints, for each, "<name> ok" or
// "<name> rejected: <reason>".
//
// Input: { origin, publicKey (base64, 32 raw Ed25519 bytes), cases: [{ name, note, leaf (base64
// of the leaf data: the sha-256 of the event's body), index, hashes: [base64] }] }.
'use strict';

const crypto = require('node:crypto');
const { verifyCheckpoint } = require('@sigstore/verify/dist/tlog/checkpoint');
const { verifyMerkleInclusion } = require('@sigstore/verify/dist/tlog/merkle');

const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
const raw = Buffer.from(input.publicKey, 'base64');

// The C2SP signed-note key ID, computed here from the specification:
// SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4].
const keyId = crypto
  .createHash('sha256')
  .update(Buffer.concat([Buffer.from(input.origin + '\n'), Buffer.from([0x01]), raw]))
  .digest()
  .subarray(0, 4);
// The key as Node holds it: the 12-byte SPKI header of Ed25519, then the raw key.
const publicKey = crypto.createPublicKey({
  key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]),
  format: 'der',
  type: 'spki',
});
const tlogs = [{ logID: keyId, baseURL: 'https://' + input.origin, publicKey }];

for (const c of input.cases) {
  try {
    const entry = {
      canonicalizedBody: Buffer.from(c.leaf, 'base64'),
      inclusionProof: {
        logIndex: String(c.index),
        hashes: c.hashes.map((h) => Buffer.from(h, 'base64')),
        checkpoint: { envelope: c.note },
      },
    };
    const checkpoint = verifyCheckpoint(entry, tlogs);
    verifyMerkleInclusion(entry, checkpoint);
    console.log(`${c.name} ok size=${checkpoint.logSize}`);
  } catch (e) {
    console.log(`${c.name} rejected: ${e.message}`);
  }
}
