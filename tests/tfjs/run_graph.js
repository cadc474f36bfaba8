// Runs a TensorFlow.js graph model with the pure-JavaScript CPU backend: the reference the
// ONNX converter (model_factory/facemodels/tfjs_graph.py) is checked against.
//   node run_graph.js MODEL_JSON OUTPUT_NODE INPUT.f32 N H W C OUTPUT.f32
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");

async function main() {
  const [modelJson, outputNode, inputFile, n, h, w, c, outputFile] = process.argv.slice(2);
  const spec = JSON.parse(fs.readFileSync(modelJson));
  const weightSpecs = [];
  const buffers = [];
  for (const group of spec.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const shard of group.paths) buffers.push(fs.readFileSync(path.join(path.dirname(modelJson), shard)));
  }
  const joined = Buffer.concat(buffers);
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  await tf.setBackend("cpu");
  const model = await tf.loadGraphModel(tf.io.fromMemory({ modelTopology: spec.modelTopology, weightSpecs, weightData }));
  const raw = fs.readFileSync(inputFile);
  const input = tf.tensor4d(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), [+n, +h, +w, +c]);
  const output = model.execute(input, outputNode);
  fs.writeFileSync(outputFile, Buffer.from((await output.data()).buffer));
}

main().catch((error) => { console.error(error); process.exit(1); });
