// Runs a TF.js graph model as published (model.json + shards) on TensorFlow.js's pure-JavaScript CPU backend.
// Usage: node run_graph_model.mjs MODEL_JSON INPUT_NAME DTYPE SHAPE(comma-separated) INPUT_FILE OUTPUT_DIR
// INPUT_FILE holds the input tensor's raw little-endian values; each output is written to OUTPUT_DIR as
// NAME.bin (float32 little-endian), and OUTPUT_DIR/outputs.json lists their names and shapes.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';

const [modelJson, inputName, dtype, shapeText, inputFile, outDir] = process.argv.slice(2);
const model = JSON.parse(readFileSync(modelJson, 'utf8'));
const specs = model.weightsManifest.flatMap((group) => group.weights);
const shards = model.weightsManifest.flatMap((group) => group.paths.map((p) => readFileSync(join(dirname(modelJson), p))));
const weights = Buffer.concat(shards);
const weightData = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength);

await tf.setBackend('cpu');
const graph = await tf.loadGraphModel(tf.io.fromMemory({ modelTopology: model.modelTopology, weightSpecs: specs, weightData }));
const raw = readFileSync(inputFile);
const values = dtype === 'int32'
  ? new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)
  : new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const input = tf.tensor(values, shapeText.split(',').map(Number), dtype);
const names = Object.values(model.signature.outputs).map((o) => o.name);
const outputs = await graph.executeAsync({ [inputName]: input }, names);
const listed = [];
for (const [i, tensor] of (Array.isArray(outputs) ? outputs : [outputs]).entries()) {
  const name = names[i].split(':')[0];
  const data = await tensor.data();
  writeFileSync(join(outDir, `${name}.bin`), Buffer.from(new Float32Array(data).buffer));
  listed.push({ name, shape: tensor.shape });
}
writeFileSync(join(outDir, 'outputs.json'), JSON.stringify(listed));
console.log(`tfjs ${tf.version.tfjs} backend ${tf.getBackend()}: ${listed.length} outputs`);
