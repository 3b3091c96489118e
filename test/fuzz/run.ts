/**
 * `npm run fuzz [-- --cases N --seed S]`: runs the codec fuzzer (test/fuzz/engine.ts), by default
 * 1,000,000 cases, prints what it ran and every rejection code, and exits 1 on any uncoded exception
 * or any accepted non-canonical frame (printing the inputs to reproduce them).
 */
import { parseArgs } from 'node:util';
import { buildCorpus, runFuzz, STRATEGIES } from './engine.ts';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: '20260101' },
    corpus: { type: 'string', default: '3000' },
  },
});
const cases = Number(values.cases);
const seed = Number(values.seed);
const corpusSize = Number(values.corpus);
if (!Number.isSafeInteger(cases) || cases < 1 || !Number.isSafeInteger(seed) || !Number.isSafeInteger(corpusSize)) {
  console.error('usage: npm run fuzz -- [--cases N] [--seed S] [--corpus N]');
  process.exit(2);
}

const t0 = performance.now();
const corpus = buildCorpus(seed, corpusSize);
const t1 = performance.now();
const stats = runFuzz({ cases, seed, corpus });
const t2 = performance.now();

const fmt = (n: number) => n.toLocaleString('en-US');
const pct = (n: number) => `${((100 * n) / stats.cases).toFixed(2)} %`;
console.log(`codec fuzz: seed ${seed}, corpus ${fmt(corpus.length)} frames (${((t1 - t0) / 1000).toFixed(1)} s)`);
console.log(
  `cases run: ${fmt(stats.cases)} in ${((t2 - t1) / 1000).toFixed(1)} s (${fmt(Math.round(stats.cases / ((t2 - t1) / 1000)))}/s)`,
);
console.log('\nby strategy:');
for (const s of STRATEGIES) {
  const { cases: n, decoded } = stats.byStrategy[s];
  console.log(`  ${s.padEnd(20)} ${fmt(n).padStart(10)} cases ${fmt(decoded).padStart(9)} decoded`);
}
console.log('\noutcomes:');
console.log(`  ${'decoded (valid)'.padEnd(20)} ${fmt(stats.decoded).padStart(10)}  ${pct(stats.decoded)}`);
for (const [code, n] of Object.entries(stats.byCode).sort((a, b) => b[1] - a[1])) {
  console.log(`  ${code.padEnd(20)} ${fmt(n).padStart(10)}  ${pct(n)}`);
}
console.log(`\nuncoded exceptions: ${stats.uncoded}`);
console.log(`non-canonical frames accepted: ${stats.nonCanonical}`);
for (const f of stats.failures) console.log(`  ${f.kind} [${f.strategy}] ${f.detail}\n    ${f.hex}`);
if (stats.uncoded > 0 || stats.nonCanonical > 0) process.exit(1);
