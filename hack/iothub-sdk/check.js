// check.js drives an IoT hub with Microsoft's service SDK (npm azure-iothub,
// pinned in package.json) through the calls stationfleet's emulator must
// answer as IoT Hub does: create a device, read and update it, read its
// twin, update the twin with its ETag (and see a stale ETag refused) and
// with "*", query with paging, delete.
//
//   IOTHUB_CONNECTION_STRING='HostName=localhost;SharedAccessKeyName=...;SharedAccessKey=...' \
//   NODE_EXTRA_CA_CERTS=.iothub-emulator/hubsim-ca.pem node hack/iothub-sdk/check.js
//
// It prints one "ok ..." line per call and exits 0, or prints what failed
// and exits 1. It touches only devices it creates (ids "sdkcheck-<run>-*")
// and deletes them at the end.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');

const cs = process.env.IOTHUB_CONNECTION_STRING;
if (!cs) {
  console.error('IOTHUB_CONNECTION_STRING is not set');
  process.exit(1);
}

const run = crypto.randomBytes(4).toString('hex');
const tagged = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6'].map((s) => `sdkcheck-${run}-${s}`);
// Sorts after every tagged device and does not match the query: a hub that
// hands out a continuation token because devices remain, rather than
// because matches remain, shows it here.
const untagged = `sdkcheck-${run}-z`;
const pageSize = 2;

function ok(what) {
  console.log(`ok ${what}`);
}

// statusOf returns the HTTP status of an SDK error (the SDK keeps the
// response on the error).
function statusOf(err) {
  return err && err.response && err.response.statusCode;
}

async function main() {
  const registry = Registry.fromConnectionString(cs);
  const first = tagged[0];

  // Create.
  const created = (await registry.create({ deviceId: first, status: 'enabled' })).responseBody;
  assert.equal(created.deviceId, first);
  assert.ok(created.etag, 'a created device has an ETag');
  assert.ok(created.authentication.symmetricKey.primaryKey, 'the hub generated a primary key');
  ok(`create device ${first}`);

  // Read, then update the identity: Registry.update sends If-Match: "*".
  const got = (await registry.get(first)).responseBody;
  assert.equal(got.deviceId, first);
  got.status = 'disabled';
  const updated = (await registry.update(got)).responseBody;
  assert.equal(updated.status, 'disabled');
  assert.notEqual(updated.etag, got.etag, 'an update changes the device ETag');
  ok('update device (If-Match: "*")');

  // The twin.
  const twin = (await registry.getTwin(first)).responseBody;
  assert.equal(twin.deviceId, first);
  assert.ok(twin.etag, 'a twin has an ETag');
  ok(`get twin (etag ${twin.etag})`);

  // Update with its ETag.
  const patched = (await registry.updateTwin(first, { tags: { sdkcheck: run, step: 'etag' } }, twin.etag)).responseBody;
  assert.equal(patched.tags.sdkcheck, run);
  assert.equal(patched.tags.step, 'etag');
  assert.notEqual(patched.etag, twin.etag, 'a write changes the twin ETag');
  ok('update twin with its ETag');

  // The ETag read before that write is stale now: 412.
  await assert.rejects(
    registry.updateTwin(first, { tags: { step: 'stale' } }, twin.etag),
    (err) => statusOf(err) === 412 || assert.fail(`stale ETag: want 412, got ${statusOf(err)}: ${err}`),
  );
  ok('update twin with a stale ETag is refused (412)');

  // Update with "*": unconditional.
  const forced = (await registry.updateTwin(first, {
    tags: { step: 'star' },
    properties: { desired: { cups: { package: '2.0.7' } } },
  }, '*')).responseBody;
  assert.equal(forced.tags.step, 'star');
  assert.equal(forced.tags.sdkcheck, run, 'a twin patch merges');
  assert.equal(forced.properties.desired.cups.package, '2.0.7');
  ok('update twin with If-Match: "*"');

  // The Twin object's own update uses the ETag it holds.
  const t = (await registry.getTwin(first)).responseBody;
  await t.update({ tags: { step: 'twin.update' } });
  assert.equal(t.tags.step, 'twin.update');
  ok('Twin.update with the ETag it read');

  // More devices, then a query paged pageSize at a time.
  for (const id of tagged.slice(1)) {
    await registry.create({ deviceId: id });
    const tw = (await registry.getTwin(id)).responseBody;
    await registry.updateTwin(id, { tags: { sdkcheck: run } }, tw.etag);
  }
  await registry.create({ deviceId: untagged });
  ok(`create ${tagged.length} tagged devices and 1 untagged`);

  const query = registry.createQuery(`SELECT * FROM devices WHERE tags.sdkcheck = '${run}'`, pageSize);
  const seen = [];
  const pages = [];
  while (query.hasMoreResults) {
    const page = (await query.nextAsTwin()).result;
    pages.push(page.length);
    for (const tw of page) seen.push(tw.deviceId);
    assert.ok(pages.length <= tagged.length, 'the query ends');
  }
  assert.deepEqual([...seen].sort(), [...tagged].sort(), 'the query returns every tagged device once');
  assert.deepEqual(pages, [2, 2, 2], `pages of ${pageSize}, no empty page after the last match`);
  ok(`query with paging: ${pages.length} pages of ${pageSize}, no continuation after the last match`);

  // Delete: Registry.delete sends If-Match: "*".
  for (const id of [...tagged, untagged]) {
    await registry.delete(id);
  }
  await assert.rejects(registry.get(first), (err) => statusOf(err) === 404 || assert.fail(`get after delete: ${err}`));
  await assert.rejects(registry.getTwin(first), (err) => statusOf(err) === 404 || assert.fail(`twin after delete: ${err}`));
  ok(`delete ${tagged.length + 1} devices (If-Match: "*")`);
}

main().then(
  () => {
    console.log('all calls passed');
    process.exit(0);
  },
  (err) => {
    console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
    if (err && err.response) {
      console.error(`HTTP ${err.response.statusCode}: ${err.responseBody || ''}`);
    }
    process.exit(1);
  },
);
