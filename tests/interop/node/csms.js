'use strict';
// A CSMS made with ocpp-rpc (an OCPP-J implementation independent of the Python `ocpp`
// package), strict schema validation on both ways, for tests/interop: it checks each station's
// Basic auth (identity = the URL's last segment, the password the test set), answers what a
// station sends with schema-valid results, and makes the calls the test asks for.
//
// Usage: node csms.js  (then commands on stdin, events on stdout; see peer.js)
//   {"op": "password", "identity": "CP-1", "password": "..."}  who may connect, with what
//   {"op": "call", "ref": 1, "identity": "CP-1", "method": "GetVariables", "params": {...}}
//   {"op": "raw", "ref": 2, "identity": "CP-1", "frame": [2, "raw-1", "NoSuchAction", {}]}
//   {"op": "drop", "identity": "CP-1"}  close the station's connection
//   {"op": "heartbeat", "interval": 1}  the interval BootNotification gives

const {timingSafeEqual} = require('node:crypto');
const {RPCServer, createRPCError} = require('ocpp-rpc');
const {emit, watch, runCommand, commands} = require('./peer');

const passwords = new Map();
const clients = new Map();
let heartbeatInterval = 300;

function sameSecret(given, expected) {
    const a = Buffer.from(given ?? '');
    const b = Buffer.from(expected, 'utf8');
    return a.length === b.length && timingSafeEqual(a, b);
}

const server = new RPCServer({
    protocols: ['ocpp2.0.1'],
    strictMode: true,
    callTimeoutMs: 10000,
    pingIntervalMs: 60000,
});

server.auth((accept, reject, handshake) => {
    const expected = passwords.get(handshake.identity);
    if (handshake.endpoint !== '/ocpp' || expected === undefined || !sameSecret(handshake.password, expected)) {
        emit({event: 'refused', identity: handshake.identity, endpoint: handshake.endpoint, hadPassword: handshake.password !== undefined});
        reject(401, 'wrong identity or password');
        return;
    }
    accept({});
});

const now = () => new Date().toISOString();

server.on('client', (client) => {
    const identity = client.identity;
    clients.set(identity, client);
    watch(client, identity);
    emit({event: 'connected', identity, protocol: client.protocol});
    client.on('close', ({code}) => {
        if (clients.get(identity) === client) clients.delete(identity);
        emit({event: 'disconnected', identity, code});
    });
    const answers = {
        BootNotification: () => ({currentTime: now(), interval: heartbeatInterval, status: 'Accepted'}),
        Heartbeat: () => ({currentTime: now()}),
        StatusNotification: () => ({}),
        SecurityEventNotification: () => ({}),
        NotifyReport: () => ({}),
    };
    for (const [method, answer] of Object.entries(answers)) {
        client.handle(method, ({params}) => {
            emit({event: 'call', identity, method, params});
            return answer(params);
        });
    }
    client.handle(({method, params}) => {
        emit({event: 'unexpected_call', identity, method, params});
        throw createRPCError('NotImplemented', `this CSMS does not handle ${method}`);
    });
});

function clientOf(identity) {
    const client = clients.get(identity);
    if (!client) throw Error(`no station ${identity} connected`);
    return client;
}

commands(async (command) => {
    if (await runCommand(command, clientOf)) return true;
    switch (command.op) {
        case 'password':
            passwords.set(command.identity, command.password);
            emit({event: 'done', ref: command.ref});
            return true;
        case 'heartbeat':
            heartbeatInterval = command.interval;
            emit({event: 'done', ref: command.ref});
            return true;
        case 'drop':
            await clientOf(command.identity).close({code: 1000, reason: 'the test drops the connection'});
            emit({event: 'done', ref: command.ref});
            return true;
        default:
            return false;
    }
});

server.on('error', (error) => emit({event: 'fatal', message: String(error?.stack ?? error)}));
server.listen(0, '127.0.0.1').then((http) => emit({event: 'listening', port: http.address().port}));
