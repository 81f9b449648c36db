// face-api.js's own FaceLandmark68Net (TF.js, CPU backend) on 112x112 crops given as raw RGB files:
// prints its outputs (68 x, y in [0, 1] of each crop) as JSON. Used by training/convert_face_landmarks.py.
// Usage: NODE_PATH=<node_modules with @tensorflow/tfjs> node face_api_reference.mjs PACKAGE_DIR MODEL CROP...
import { createRequire } from 'module';
import fs from 'fs';

const require = createRequire(import.meta.url);
const [, , packageDir, model, ...crops] = process.argv;
const faceapi = require(`${packageDir}/dist/face-api.node-wasm.js`);
const tf = faceapi.tf;
await tf.setBackend('cpu');
const manifest = JSON.parse(fs.readFileSync(`${packageDir}/model/${model}-weights_manifest.json`));
const buffer = fs.readFileSync(`${packageDir}/model/${manifest[0].paths[0]}`);
const net = model.includes('tiny') ? new faceapi.FaceLandmark68TinyNet() : new faceapi.FaceLandmark68Net();
net.loadFromWeightMap(tf.io.decodeWeights(new Uint8Array(buffer).buffer, manifest[0].weights));
const outputs = [];
for (const file of crops) {
  const image = tf.tensor3d(new Uint8Array(fs.readFileSync(file)), [112, 112, 3], 'int32');
  outputs.push(Array.from(net.forwardInput(await faceapi.toNetInput(image)).dataSync()));
}
console.log(JSON.stringify(outputs));
