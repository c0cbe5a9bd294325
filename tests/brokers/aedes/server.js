'use strict'
// aedes on 127.0.0.1:<port>, sessions, retained messages and in-flight QoS 1/2 state kept
// in a LevelDB folder, so that a restart on the same folder keeps them (as mosquitto's
// persistence file does). Started by tests/e2e/conftest.py:
//   node server.js <port> <data folder>
// Prints "running" once it listens and one "client connected: <id>" /
// "client disconnected: <id>" / "client error: <id> <message>" line per event, and
// "published: <id> <qos> <topic> <payload as JSON string>" for each message a client
// published, as aedes routes it (payloads of up to 64 bytes).
const { createServer } = require('node:net')
const { Aedes } = require('aedes')
const { Level } = require('level')
const levelPersistence = require('aedes-persistence-level')

async function main () {
  const port = Number(process.argv[2])
  const folder = process.argv[3]
  if (!Number.isInteger(port) || port <= 0 || !folder) {
    console.error('usage: node server.js <port> <data folder>')
    process.exit(2)
  }
  const db = new Level(folder)
  const broker = await Aedes.createBroker({ persistence: levelPersistence(db) })
  broker.on('client', (c) => console.log('client connected: %s', c.id))
  broker.on('clientDisconnect', (c) => console.log('client disconnected: %s', c.id))
  broker.on('clientError', (c, err) => console.log('client error: %s %s', c.id, err.message))
  broker.on('publish', (packet, c) => {
    if (c && packet.payload.length <= 64) {
      console.log('published: %s %d %s %s', c.id, packet.qos, packet.topic, JSON.stringify(packet.payload.toString('latin1')))
    }
  })
  const server = createServer(broker.handle)
  server.listen(port, '127.0.0.1', () => console.log('running on 127.0.0.1:%d', port))
  // broker.close() returns before the persistence operations of the connections it
  // closes have finished: the database closes a moment later, so that they complete.
  const stop = () => {
    server.close()
    broker.close(() => setTimeout(() => db.close().finally(() => process.exit(0)), 500))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
