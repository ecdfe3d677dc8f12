// Creates every compute pipeline of a job on Dawn (the WebGPU implementation in Chrome, through
// the npm package `webgpu`) and prints, as JSON, which ones Dawn refused and why.
//
//   node tests/dawn/pipelines.mjs JOB.json
//
// JOB.json: { "backend": "null", "levels": { "core": [P…], "compatibility": [P…] } } with each P
// { "what", "source" (WGSL), "entry", "constants" ({ name: number }) }. Dawn's null backend
// compiles and validates (Tint) without a GPU; each feature level opens a device with its default
// limits, and with the `subgroups` feature where the adapter has it (the subgroup kernels' sources
// begin with `enable subgroups;`). Used by tests/dawn.rs, which makes the job and checks the answer.
import { readFileSync } from 'node:fs';
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const gpu = create([`backend=${job.backend}`]);
const report = { levels: {} };
for (const [level, pipelines] of Object.entries(job.levels)) {
  const adapter = await gpu.requestAdapter({ featureLevel: level });
  if (!adapter) {
    report.levels[level] = { error: `no ${level} adapter on Dawn's ${job.backend} backend` };
    continue;
  }
  const requiredFeatures = adapter.features.has('subgroups') ? ['subgroups'] : [];
  const device = await adapter.requestDevice({ requiredFeatures });
  const failures = [];
  const modules = new Map();
  for (const p of pipelines) {
    let module = modules.get(p.source);
    if (!module) {
      module = device.createShaderModule({ code: p.source });
      modules.set(p.source, module);
    }
    device.pushErrorScope('validation');
    let error = null;
    try {
      await device.createComputePipelineAsync({
        layout: 'auto',
        compute: { module, entryPoint: p.entry, constants: p.constants },
      });
    } catch (e) {
      error = e.message;
    }
    const scoped = await device.popErrorScope();
    if (scoped) error = (error ? error + '; ' : '') + scoped.message;
    if (error) failures.push({ what: p.what, error: error.split('\n').slice(0, 6).join('\n') });
  }
  report.levels[level] = {
    checked: pipelines.length,
    failures,
    limits: {
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
    },
  };
  device.destroy();
}
// Exit once the report is written: process.exit() right after a large write to a pipe cuts it.
process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0));
