// Reads `count` records of a topic from its start with kafkajs (read_committed, a fresh consumer group) and
// prints one JSON line per record: {key, value} with value parsed as JSON. Exits non-zero after `timeoutMs`.
// usage: node read_json_topic.mjs BROKER TOPIC COUNT TIMEOUT_MS
import { Kafka, logLevel } from "kafkajs";

const [broker, topic, countArg, timeoutArg] = process.argv.slice(2);
const count = Number(countArg);
const kafka = new Kafka({ clientId: "visionstream-kafkajs-check", brokers: [broker], logLevel: logLevel.ERROR });
const consumer = kafka.consumer({ groupId: `kafkajs-check-${Date.now()}-${Math.random()}`, readUncommitted: false });
const seen = [];
const timer = setTimeout(() => {
  console.error(`timed out with ${seen.length} of ${count} records`);
  process.exit(2);
}, Number(timeoutArg));

await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({
  eachMessage: async ({ message }) => {
    seen.push({ key: message.key ? message.key.toString() : null, value: JSON.parse(message.value.toString()) });
    if (seen.length >= count) {
      clearTimeout(timer);
      // print and leave: awaiting disconnect() inside eachMessage would wait for this very handler
      process.stdout.write(seen.map((r) => JSON.stringify(r)).join("\n") + "\n", () => process.exit(0));
    }
  },
});
