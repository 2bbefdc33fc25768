'use strict';
// What both peer scripts share: the line protocol with the Python test (one JSON object per
// line: events out on stdout, commands in on stdin) and the watch on every ocpp-rpc connection
// that turns a strict-validation failure or a malformed frame into an event the test fails on.

const readline = require('node:readline');

function emit(event) {
    process.stdout.write(JSON.stringify(event) + '\n');
}

function describe(error) {
    return {code: error?.rpcErrorCode ?? error?.code ?? error?.name, message: String(error?.message ?? error)};
}

// Frames the test sent raw (schema-invalid or unknown calls): their answers are reported as
// `raw_reply`; ocpp-rpc calls an answer to a call it did not make a bad message, expected here.
const rawIds = new Set();

function frameId(data) {
    try {
        const frame = JSON.parse(String(data));
        return Array.isArray(frame) ? [frame, frame[1]] : [frame, undefined];
    } catch {
        return [undefined, undefined];
    }
}

function watch(client, identity) {
    client.on('strictValidationFailure', (failure) => emit({
        event: 'validation_failure',
        identity,
        method: failure.method,
        outbound: failure.outbound,
        isCall: failure.isCall,
        params: failure.params,
        result: failure.result,
        ...describe(failure.error),
        errors: failure.error?.details?.errors,
    }));
    client.on('message', ({message, outbound}) => {
        if (outbound) return;
        const [frame, id] = frameId(message);
        if (id !== undefined && rawIds.has(id)) {
            rawIds.delete(id);
            emit({event: 'raw_reply', identity, id, frame});
        }
    });
    client.on('badMessage', ({buffer, error}) => {
        const [, id] = frameId(buffer);
        if (id !== undefined && String(id).startsWith('raw-')) return; // answered a raw frame
        emit({event: 'bad_message', identity, frame: String(buffer).slice(0, 2000), ...describe(error)});
    });
    client.on('callError', (event) => {
        // Errors this side received for its calls, or sent for the peer's: both are reported,
        // the test decides which it expected.
        emit({event: 'call_error_seen', identity, outbound: event.outbound, method: event.method, ...describe(event.error)});
    });
}

// Answers the test gives for calls it handles itself (`delegate`): ref -> resolve.
const pendingReplies = new Map();
let nextRef = 0;

function delegate(identity, method, params) {
    const ref = `d${++nextRef}`;
    emit({event: 'request', identity, ref, method, params});
    return new Promise((resolve, reject) => pendingReplies.set(ref, {resolve, reject}));
}

async function runCommand(command, clientOf) {
    const {op, ref} = command;
    if (op === 'reply') {
        const pending = pendingReplies.get(ref);
        if (!pending) throw Error(`no request ${ref}`);
        pendingReplies.delete(ref);
        const {createRPCError} = require('ocpp-rpc');
        if (command.error) pending.reject(createRPCError(command.error.code, command.error.message));
        else pending.resolve(command.result);
        return true;
    }
    if (op === 'call') {
        const client = clientOf(command.identity);
        try {
            const result = await client.call(command.method, command.params);
            emit({event: 'result', ref, result});
        } catch (error) {
            emit({event: 'call_failed', ref, ...describe(error)});
        }
        return true;
    }
    if (op === 'raw') {
        const client = clientOf(command.identity);
        rawIds.add(command.frame[1]);
        client.sendRaw(JSON.stringify(command.frame));
        emit({event: 'sent', ref});
        return true;
    }
    return false;
}

function commands(handle) {
    const lines = readline.createInterface({input: process.stdin});
    lines.on('line', (line) => {
        let command;
        try {
            command = JSON.parse(line);
        } catch {
            emit({event: 'fatal', message: `not JSON from the test: ${line.slice(0, 200)}`});
            return;
        }
        Promise.resolve()
            .then(() => handle(command))
            .then((known) => known || emit({event: 'fatal', message: `unknown command ${command.op}`}))
            .catch((error) => emit({event: 'fatal', message: String(error?.stack ?? error)}));
    });
    // The test's end closes stdin: the peer goes with it, whatever it was doing.
    lines.on('close', () => process.exit(0));
}

process.on('unhandledRejection', (error) => emit({event: 'fatal', message: String(error?.stack ?? error)}));

module.exports = {emit, describe, watch, delegate, runCommand, commands};
