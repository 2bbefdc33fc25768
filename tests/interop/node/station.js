'use strict';
// A Charging Station made with ocpp-rpc (independent of the Python `ocpp` package), strict
// schema validation on both ways, for tests/interop: it connects with the identity and Basic
// auth password the test gives, sends what the test asks, and hands the CSMS's calls to the
// test to answer (the test holds the charger's factory secret: it opens tickets and signs
// receipts with chargepin.core, as the charger does).
//
// Usage: node station.js  (then commands on stdin, events on stdout; see peer.js)
//   {"op": "connect", "ref": 1, "endpoint": "ws://127.0.0.1:P/ocpp", "identity": "CP-1", "password": "..."}
//   {"op": "call", "ref": 2, "method": "BootNotification", "params": {...}}
//   {"op": "raw", "ref": 3, "frame": [2, "raw-1", "SecurityEventNotification", {"type": 5}]}
//   {"op": "reply", "ref": "d1", "result": {...}}  the answer to a CSMS call (event `request`)
//   {"op": "close", "ref": 4}

const {RPCClient} = require('ocpp-rpc');
const {emit, watch, delegate, runCommand, commands} = require('./peer');

let client = null;

function connectedClient() {
    if (!client) throw Error('not connected');
    return client;
}

commands(async (command) => {
    if (await runCommand(command, connectedClient)) return true;
    switch (command.op) {
        case 'connect': {
            const identity = command.identity;
            client = new RPCClient({
                endpoint: command.endpoint,
                identity,
                password: command.password,
                protocols: ['ocpp2.0.1'],
                strictMode: true,
                reconnect: false,
                callTimeoutMs: 10000,
                pingIntervalMs: 60000,
            });
            watch(client, identity);
            client.handle(({method, params}) => delegate(identity, method, params));
            client.on('close', ({code, reason}) => emit({event: 'disconnected', identity, code, reason}));
            try {
                await client.connect();
                emit({event: 'connected', ref: command.ref, identity, protocol: client.protocol});
            } catch (error) {
                emit({event: 'connect_failed', ref: command.ref, identity, status: error.code, message: String(error.message)});
                client = null;
            }
            return true;
        }
        case 'close':
            await connectedClient().close({code: 1000});
            client = null;
            emit({event: 'done', ref: command.ref});
            return true;
        default:
            return false;
    }
});
