#!/usr/bin/env node
// A small Node.js client for the regd gRPC daemon.
//
//   node index.js [--addr host:port|unix:/path.sock] [--timeout SECONDS] [CONNECTION OPTIONS] COMMAND ...
//     inspect REF [--platform os/arch[/variant]]
//     exists REF
//     write-layer REPO FILE [--inline] [--digest D] [--media-type T] [--mount-from REPO] [--max-attempts N]
//     upload REPO FILE [--digest D] [--media-type T] [--mount-from REPO] [--chunk-bytes N] [--max-attempts N]
//     pull REF --layout DIR [--ref-name N] [--platform os/arch[/variant] | --all-platforms]
//          [--concurrency N] [--max-attempts N]   (DIR: on the daemon's side, in its --allowed_paths)
//
// Connection options: --tls-ca PEM, --tls-cert PEM --tls-key PEM,
// --tls-server-name NAME (TLS is used when any --tls-* option is given),
// --token TOKEN (metadata "authorization: Bearer TOKEN"), --registry-auth-file
// JSON or --registry-user USER --registry-password PASS (metadata
// "x-registry-auth": base64url of a Docker AuthConfig JSON). The metadata goes
// with every call. Options may appear anywhere on the command line.
//
// The proto is loaded at run time from ../../proto (or $REGD_PROTO_DIR).
// Results are printed as JSON on stdout and progress on stderr. On a gRPC
// error the status code name and message go to stderr and the exit status is
// the numeric gRPC code (NOT_FOUND exits 5, UNAVAILABLE 14, ...).
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = process.env.REGD_PROTO_DIR || path.join(__dirname, '..', '..', 'proto');

function loadRegistryService() {
  const definition = protoLoader.loadSync('regd/v1/registry.proto', {
    includeDirs: [PROTO_DIR],
    keepCase: true, // proto field names, as the Python and Go examples print
    longs: String, // int64 as strings, like the proto3 JSON mapping
    enums: String,
    defaults: true,
    oneofs: true, // adds e.g. `event: 'progress'` naming the set oneof field
  });
  return grpc.loadPackageDefinition(definition).regd.v1.Registry;
}

class UsageError extends Error {}

function parsePlatform(text) {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new UsageError(`platform must be os/arch[/variant], got "${text}"`);
  }
  return { os: parts[0], architecture: parts[1], variant: parts[2] || '' };
}

function printJson(obj) {
  process.stdout.write(JSON.stringify(obj, null, 2) + '\n');
}

function describeProgress(p) {
  const complete = Number(p.complete);
  const total = Number(p.total);
  return total > 0
    ? `progress: ${complete}/${total} bytes (${Math.floor((100 * complete) / total)}%)`
    : `progress: ${complete} bytes`;
}

function describeRetry(r) {
  const d = r.next_retry_in || { seconds: '0', nanos: 0 };
  const delay = Number(d.seconds) + d.nanos / 1e9;
  return `retry: attempt ${r.attempt}/${r.max_attempts} failed: ${r.error}; next in ${delay.toFixed(1)}s`;
}

// Wraps a unary call in a promise with a deadline.
function unary(client, method, request, timeoutSec) {
  const deadline = new Date(Date.now() + timeoutSec * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function inspect(client, opts, positionals) {
  if (positionals.length !== 1) throw new UsageError('inspect takes one image reference');
  const request = { image_ref: positionals[0] };
  if (opts.platform) request.platform = parsePlatform(opts.platform);
  printJson(await unary(client, 'Inspect', request, opts.timeout));
}

async function exists(client, opts, positionals) {
  if (positionals.length !== 1) throw new UsageError('exists takes one image reference');
  printJson(await unary(client, 'Exists', { image_ref: positionals[0] }, opts.timeout));
}

function writeLayer(client, opts, positionals) {
  if (positionals.length !== 2) throw new UsageError('write-layer takes REPO FILE');
  const [repo, file] = positionals;
  const layer = {
    digest: opts.digest || '',
    media_type: opts['media-type'] || '',
    mount_from: opts['mount-from'] || '',
  };
  if (opts.inline) {
    layer.data = fs.readFileSync(file);
  } else {
    // The daemon opens the file itself: it must lie inside --allowed_paths.
    layer.path = path.resolve(file);
  }
  const request = {
    repo,
    layer,
    retry: { max_attempts: Number(opts['max-attempts'] || 0) },
  };
  return new Promise((resolve, reject) => {
    let result = null;
    const call = client.WriteLayer(request); // no deadline: uploads can be long
    call.on('data', (ev) => {
      switch (ev.event) {
        case 'progress':
          console.error(describeProgress(ev.progress));
          break;
        case 'retry':
          console.error(describeRetry(ev.retry));
          break;
        case 'result':
          result = ev.result;
          break;
        default:
          break;
      }
    });
    call.on('error', reject); // a non-OK status ends the stream here
    call.on('end', () => {
      if (result === null) {
        reject(new Error('stream ended without a LayerResult'));
      } else {
        printJson(result);
        resolve();
      }
    });
  });
}

// PullImage: regd pulls REF into an OCI image layout on its own disk (inside
// its --allowed_paths). One line per blob event on stderr, then the
// PullResult as JSON on stdout.
function pull(client, opts, positionals) {
  if (positionals.length !== 1) throw new UsageError('pull takes one image reference');
  if (!opts.layout) throw new UsageError('pull needs --layout DIR');
  if (opts.platform && opts['all-platforms']) {
    throw new UsageError('--platform and --all-platforms exclude each other');
  }
  const request = {
    ref: positionals[0],
    // The path is the daemon's: made absolute here, as regd requires.
    layout: { path: path.resolve(opts.layout), ref_name: opts['ref-name'] || '' },
    all_platforms: opts['all-platforms'],
    concurrency: Number(opts.concurrency || 0),
  };
  if (opts.platform) request.platform = parsePlatform(opts.platform);
  // Unset, regd uses its read policy (short delays between attempts).
  if (opts['max-attempts']) request.retry = { max_attempts: Number(opts['max-attempts']) };
  return new Promise((resolve, reject) => {
    let result = null;
    const call = client.PullImage(request); // no deadline: pulls can be long
    call.on('data', (ev) => {
      const blob = ev.blob_digest.slice(0, 19);
      switch (ev.event) {
        case 'progress':
          console.error(`${blob} ${describeProgress(ev.progress)}`);
          break;
        case 'retry':
          console.error(`${blob} ${describeRetry(ev.retry)}`);
          break;
        case 'layer':
          console.error(`${blob} done: ${ev.layer.outcome}`);
          break;
        case 'result':
          result = ev.result;
          break;
        default:
          break;
      }
    });
    call.on('error', reject); // a non-OK status ends the stream here
    call.on('end', () => {
      if (result === null) {
        reject(new Error('stream ended without a PullResult'));
      } else {
        printJson(result);
        resolve();
      }
    });
  });
}

const MiB = 1 << 20;

// sha256 digest and size of a file, streaming it.
async function fileDigest(file) {
  const hash = crypto.createHash('sha256');
  let size = 0;
  for await (const data of fs.createReadStream(file, { highWaterMark: MiB })) {
    hash.update(data);
    size += data.length;
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

// UploadBlob: sends `start`, then streams FILE from each send_from offset
// regd asks for, restarting the pass when a new send_from comes. The request
// stream is not half-closed after the last chunk (regd may ask for bytes
// again after a failed commit); it is ended once the result is in.
async function upload(client, opts, positionals) {
  if (positionals.length !== 2) throw new UsageError('upload takes REPO FILE');
  const [repo, file] = positionals;
  const chunkBytes = opts['chunk-bytes'] === undefined ? MiB : Number(opts['chunk-bytes']);
  if (!Number.isInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes > 8 * MiB) {
    throw new UsageError(`--chunk-bytes must be 1..${8 * MiB}`);
  }
  let digest = opts.digest;
  let size;
  if (digest) {
    size = (await fs.promises.stat(file)).size;
  } else {
    ({ digest, size } = await fileDigest(file));
  }

  const fh = await fs.promises.open(file, 'r');
  const state = { sent: 0, passes: 0 };
  try {
    const result = await uploadStream(client, fh, chunkBytes, state, {
      repo,
      digest,
      size,
      media_type: opts['media-type'] || '',
      mount_from: opts['mount-from'] || '',
      retry: { max_attempts: Number(opts['max-attempts'] || 0) },
    });
    console.error(`sent ${state.sent} bytes in ${state.passes} passes`);
    printJson(result);
  } catch (err) {
    console.error(`sent ${state.sent} bytes in ${state.passes} passes`);
    throw err;
  } finally {
    await fh.close();
  }
}

// Runs one UploadBlob call; resolves with its LayerResult.
function uploadStream(client, fh, chunkBytes, state, start) {
  return new Promise((resolve, reject) => {
    const call = client.UploadBlob(); // no deadline: uploads can be long
    let result = null;
    let stopped = false; // result in, or the call failed: the sender stops
    let settled = false;
    let wanted = null; // the latest send_from offset not yet acted on
    let wake = null; // ends the sender's wait (for a send_from or 'drain')
    let lastProgress = 0;

    const poke = () => {
      const w = wake;
      wake = null;
      if (w) w();
    };
    const stop = () => {
      stopped = true;
      poke();
    };
    const settle = (err) => {
      stop();
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve(result);
    };

    // The sender: one pass per send_from, from its offset to EOF.
    const sender = async () => {
      for (;;) {
        while (wanted === null && !stopped) await new Promise((res) => (wake = res));
        if (stopped) return;
        let pos = wanted;
        wanted = null;
        state.passes += 1;
        for (;;) {
          const buf = Buffer.allocUnsafe(chunkBytes); // grpc-js may hold it a while
          const { bytesRead } = await fh.read(buf, 0, chunkBytes, pos);
          // Stop at EOF (the stream stays open), at the result, or when regd
          // asked for another offset meanwhile.
          if (stopped || wanted !== null || bytesRead === 0) break;
          state.sent += bytesRead;
          const more = call.write({ chunk: { offset: pos, data: buf.subarray(0, bytesRead) } });
          pos += bytesRead;
          if (!more) {
            // Back-pressure: wait for 'drain' (or a stop / new send_from).
            await new Promise((res) => {
              const done = () => {
                call.off('drain', done);
                if (wake === done) wake = null;
                res();
              };
              call.on('drain', done);
              wake = done;
            });
          }
          if (stopped || wanted !== null) break;
        }
      }
    };

    call.on('data', (ev) => {
      switch (ev.event) {
        case 'send_from':
          console.error(`send_from: offset ${ev.send_from.offset}`);
          wanted = Number(ev.send_from.offset);
          poke();
          break;
        case 'retry':
          console.error(describeRetry(ev.retry));
          break;
        case 'progress': {
          const p = ev.progress;
          const now = Date.now();
          if (now - lastProgress >= 1000 || (Number(p.total) > 0 && Number(p.complete) >= Number(p.total))) {
            lastProgress = now;
            console.error(describeProgress(p));
          }
          break;
        }
        case 'result':
          if (result === null) {
            // Committed: stop sending, half-close, and wait (briefly) for the
            // stream's status before settling.
            result = ev.result;
            stop();
            call.end();
            setTimeout(() => call.cancel(), 10000).unref();
          }
          break;
        default:
          break;
      }
    });
    call.on('error', (err) => {
      if (result === null) {
        settle(err); // a non-OK status ends the stream here
        return;
      }
      if (err.code !== grpc.status.CANCELLED) {
        console.error(`note: stream ended with ${grpc.status[err.code]} after the result`);
      }
      settle();
    });
    call.on('end', () => {
      settle(result === null ? new Error('stream ended without a LayerResult') : undefined);
    });

    call.write({ start });
    sender().catch((err) => {
      // Reading the file failed: report that, and give up on the call.
      settle(err);
      call.cancel();
    });
  });
}

const COMMANDS = { inspect, exists, 'write-layer': writeLayer, upload, pull };

function parseCommandLine(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      addr: { type: 'string', default: process.env.REGD_ADDR || '127.0.0.1:50051' },
      timeout: { type: 'string', default: '60' },
      platform: { type: 'string' },
      inline: { type: 'boolean', default: false },
      'media-type': { type: 'string' },
      'mount-from': { type: 'string' },
      'max-attempts': { type: 'string' },
      digest: { type: 'string' },
      'chunk-bytes': { type: 'string' },
      layout: { type: 'string' },
      'ref-name': { type: 'string' },
      'all-platforms': { type: 'boolean', default: false },
      concurrency: { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-server-name': { type: 'string' },
      token: { type: 'string' },
      'registry-auth-file': { type: 'string' },
      'registry-user': { type: 'string' },
      'registry-password': { type: 'string' },
      'check-proto': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  values.timeout = Number(values.timeout);
  if (!(values.timeout > 0)) throw new UsageError('--timeout must be a positive number of seconds');
  return { opts: values, command: positionals[0], args: positionals.slice(1) };
}

function readOption(opts, name) {
  try {
    return fs.readFileSync(opts[name]);
  } catch (err) {
    throw new UsageError(`--${name}: ${err.message}`);
  }
}

// x-registry-auth: base64url (RFC 4648 section 5, unpadded) of a Docker
// AuthConfig JSON object, or null for none.
function registryAuth(opts) {
  const userPass = opts['registry-user'] !== undefined || opts['registry-password'] !== undefined;
  let config;
  if (opts['registry-auth-file'] !== undefined) {
    if (userPass) {
      throw new UsageError('--registry-auth-file and --registry-user/--registry-password exclude each other');
    }
    try {
      config = JSON.parse(readOption(opts, 'registry-auth-file').toString('utf8'));
    } catch (err) {
      if (err instanceof UsageError) throw err;
      throw new UsageError(`--registry-auth-file: not JSON: ${err.message}`);
    }
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new UsageError('--registry-auth-file must hold a JSON object');
    }
  } else if (userPass) {
    if (opts['registry-user'] === undefined || opts['registry-password'] === undefined) {
      throw new UsageError('--registry-user and --registry-password go together');
    }
    config = { username: opts['registry-user'], password: opts['registry-password'] };
  } else {
    return null;
  }
  return Buffer.from(JSON.stringify(config), 'utf8').toString('base64url');
}

// The client for --addr: TLS when any --tls-* option is given, and an
// interceptor adding the --token / --registry-* metadata to every call.
function makeClient(Registry, opts) {
  if ((opts['tls-cert'] === undefined) !== (opts['tls-key'] === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  const md = [];
  if (opts.token !== undefined) md.push(['authorization', `Bearer ${opts.token}`]);
  const auth = registryAuth(opts);
  if (auth !== null) md.push(['x-registry-auth', auth]);

  let creds;
  const options = {};
  if (['tls-ca', 'tls-cert', 'tls-server-name'].some((k) => opts[k] !== undefined)) {
    creds = grpc.credentials.createSsl(
      opts['tls-ca'] !== undefined ? readOption(opts, 'tls-ca') : null,
      opts['tls-key'] !== undefined ? readOption(opts, 'tls-key') : null,
      opts['tls-cert'] !== undefined ? readOption(opts, 'tls-cert') : null,
    );
    if (opts['tls-server-name']) options['grpc.ssl_target_name_override'] = opts['tls-server-name'];
  } else {
    creds = grpc.credentials.createInsecure();
  }
  if (md.length > 0) {
    options.interceptors = [
      (callOptions, nextCall) =>
        new grpc.InterceptingCall(nextCall(callOptions), {
          start(metadata, listener, next) {
            for (const [k, v] of md) metadata.set(k, v);
            next(metadata, listener);
          },
        }),
    ];
  }
  return new Registry(opts.addr, creds, options);
}

async function main() {
  let parsed;
  try {
    parsed = parseCommandLine(process.argv.slice(2));
  } catch (err) {
    console.error(`usage error: ${err.message}`);
    return 2;
  }
  const { opts, command, args } = parsed;
  const Registry = loadRegistryService();
  if (opts['check-proto']) {
    console.log(`loaded regd.v1.Registry: ${Object.keys(Registry.service).join(', ')}`);
    return 0;
  }
  if (opts.help || !COMMANDS[command]) {
    console.error(
      'usage: node index.js [--addr ADDR] [--timeout SEC] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM]\n' +
        '         [--tls-server-name NAME] [--token TOKEN]\n' +
        '         [--registry-auth-file JSON | --registry-user USER --registry-password PASS]\n' +
        '         inspect|exists|write-layer|upload|pull ARGS...',
    );
    return opts.help ? 0 : 2;
  }

  let client;
  try {
    client = makeClient(Registry, opts);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`usage error: ${err.message}`);
    return 2;
  }
  try {
    await COMMANDS[command](client, opts, args);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`usage error: ${err.message}`);
      return 2;
    }
    if (typeof err.code === 'number' && grpc.status[err.code] !== undefined) {
      console.error(`error: ${grpc.status[err.code]}: ${err.details}`);
      return err.code || 1;
    }
    console.error(`error: ${err.message}`);
    return 1;
  } finally {
    client.close();
  }
}

main().then((code) => {
  process.exitCode = code;
});
