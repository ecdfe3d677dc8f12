// Runs compute dispatches on Dawn (Chrome's WebGPU, through the npm package `webgpu`) and prints
// the buffers asked for, as JSON: the launches sinter's launchers prepare, replayed on another
// WebGPU implementation so tests/dawn.rs can check them against the CPU reference.
//
//   EGL_PLATFORM=surfaceless node tests/dawn/run.mjs JOB.json
//
// JOB.json: { "backend", "level", "runs": [R…] } with each R { "what", "source" (WGSL), "entry",
// "constants", "params" (u32 words of the uniform at binding 0), "buffers" ([{ "data": [f32…] }
// or { "len": n }…], bindings 1, 2, …), "workgroups" ([x, y, z]), "read" (buffer indices) }.
import { readFileSync } from 'node:fs';
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const gpu = create([`backend=${job.backend}`]);
const adapter = await gpu.requestAdapter({ featureLevel: job.level });
if (!adapter) {
  process.stdout.write(
    JSON.stringify({ error: `no ${job.level} adapter on Dawn's ${job.backend} backend` }) + '\n',
    () => process.exit(0),
  );
  await new Promise(() => {});
}
const device = await adapter.requestDevice();
const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const outputs = [];
for (const r of job.runs) {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: r.source });
  const pipeline = device.createComputePipeline({
    layout: 'auto',
    compute: { module, entryPoint: r.entry, constants: r.constants },
  });
  const words = new Uint32Array(Math.max(4, Math.ceil(r.params.length / 4) * 4));
  words.set(r.params);
  const params = device.createBuffer({ size: words.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(params, 0, words);
  const buffers = r.buffers.map((b) => {
    const len = b.data ? b.data.length : b.len;
    const buf = device.createBuffer({ size: Math.ceil((len * 4) / 16) * 16, usage });
    if (b.data) device.queue.writeBuffer(buf, 0, new Float32Array(b.data));
    return buf;
  });
  const entries = [{ binding: 0, resource: { buffer: params } }].concat(
    buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
  );
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...r.workgroups);
  pass.end();
  const staging = r.read.map((i) => {
    const s = device.createBuffer({ size: buffers[i].size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.copyBufferToBuffer(buffers[i], 0, s, 0, buffers[i].size);
    return s;
  });
  device.queue.submit([encoder.finish()]);
  const error = await device.popErrorScope();
  if (error) {
    outputs.push({ what: r.what, error: error.message });
    continue;
  }
  const reads = [];
  for (const [k, s] of staging.entries()) {
    await s.mapAsync(GPUMapMode.READ);
    const len = r.buffers[r.read[k]].data ? r.buffers[r.read[k]].data.length : r.buffers[r.read[k]].len;
    reads.push(Array.from(new Float32Array(s.getMappedRange()).slice(0, len)));
    s.unmap();
  }
  outputs.push({ what: r.what, reads });
}
const info = adapter.info;
const report = { adapter: `${info.vendor} ${info.architecture} ${info.description}`.trim(), outputs };
device.destroy();
// Exit once the report is written: process.exit() right after a large write to a pipe cuts it.
process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(0));
