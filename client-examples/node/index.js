#!/usr/bin/env node
// A small Node.js client for the regd gRPC daemon.
//
//   node index.js [--addr host:port|unix:/path.sock] [--timeout SECONDS] COMMAND ...
//     inspect REF [--platform os/arch[/variant]]
//     exists REF
//     write-layer REPO FILE [--inline] [--media-type T] [--mount-from REPO]
//
// The proto is loaded at run time from ../../proto (or $REGD_PROTO_DIR).
// Results are printed as JSON on stdout and progress on stderr. On a gRPC
// error the status code name and message go to stderr and the exit status is
// the numeric gRPC code (NOT_FOUND exits 5, UNAVAILABLE 14, ...).
'use strict';

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
  const layer = { media_type: opts['media-type'] || '', mount_from: opts['mount-from'] || '' };
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

const COMMANDS = { inspect, exists, 'write-layer': writeLayer };

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
      'check-proto': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  values.timeout = Number(values.timeout);
  if (!(values.timeout > 0)) throw new UsageError('--timeout must be a positive number of seconds');
  return { opts: values, command: positionals[0], args: positionals.slice(1) };
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
    console.error('usage: node index.js [--addr ADDR] [--timeout SEC] inspect|exists|write-layer ARGS...');
    return opts.help ? 0 : 2;
  }

  const client = new Registry(opts.addr, grpc.credentials.createInsecure());
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
