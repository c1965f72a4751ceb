// Runs Transformers.js off the main thread: model loading, chat generation, embeddings.
// Messages in:  {type:'load', model, dtype, device, base} | {type:'generate', id, messages, max_new_tokens}
//               {type:'stop'} | {type:'embed', id, model, texts, base}
// Messages out: {type:'progress', ...} | {type:'ready', ...} | {type:'token', ...} | {type:'done', ...}
//               {type:'embedded', id, vectors} | {type:'error', id, message}
import {
  env, AutoTokenizer, AutoModelForCausalLM, TextStreamer, InterruptableStoppingCriteria, pipeline,
} from '@huggingface/transformers';

let chat = null; // {tokenizer, model, eos:Set<number>, key}
const extractors = new Map(); // model name -> feature-extraction pipeline

// Stop: with WASM, generate() never yields to the worker's event loop between tokens, so a
// 'stop' message would only arrive after the end. When the page is cross-origin isolated it
// also shares a flag (SharedArrayBuffer) that the main thread sets and every step reads.
class StopCriteria extends InterruptableStoppingCriteria {
  flag = null;
  _call(input_ids) {
    const stop = this.interrupted || (this.flag !== null && Atomics.load(this.flag, 0) === 1);
    if (stop) this.interrupted = true;
    return new Array(input_ids.length).fill(stop);
  }
}
const stopper = new StopCriteria();

// Everything comes from this server: models from <base>models/, the ONNX Runtime wasm from <base>ort/.
function configure(base) {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  // A path, not a full URL: Transformers.js only probes local files whose path is not a URL.
  env.localModelPath = new URL('models/', base).pathname;
  env.useBrowserCache = typeof caches !== 'undefined'; // cached between visits (Cache API)
  env.backends.onnx.wasm.wasmPaths = {
    mjs: new URL('ort/ort-wasm-simd-threaded.asyncify.mjs', base).href,
    wasm: new URL('ort/ort-wasm-simd-threaded.asyncify.wasm', base).href,
  };
}

async function pickDevice(requested) {
  if (requested === 'wasm') return 'wasm';
  try {
    if (navigator.gpu && (await navigator.gpu.requestAdapter())) return 'webgpu';
  } catch { /* no usable adapter */ }
  if (requested === 'webgpu') throw new Error('WebGPU was requested but this browser has no WebGPU adapter.');
  return 'wasm';
}

// One progress bar over all files: Transformers.js reports per-file bytes; we sum them.
function progressReporter(post) {
  const files = {};
  return (info) => {
    if (info.status === 'initiate') files[info.file] = files[info.file] ?? { loaded: 0, total: 0 };
    if (info.status === 'progress' && info.file) files[info.file] = { loaded: info.loaded ?? 0, total: info.total ?? 0 };
    if (info.status === 'done' && files[info.file]) files[info.file].loaded = files[info.file].total;
    if (['initiate', 'progress', 'done'].includes(info.status)) {
      const list = Object.values(files);
      const loaded = list.reduce((a, f) => a + f.loaded, 0);
      const total = list.reduce((a, f) => a + f.total, 0);
      post({ type: 'progress', loaded, total, files: Object.keys(files).length, file: info.file });
    }
  };
}

async function load({ model, dtype, device, base }) {
  configure(base);
  const t0 = performance.now();
  const dev = await pickDevice(device);
  const progress_callback = progressReporter((m) => self.postMessage(m));
  const tokenizer = await AutoTokenizer.from_pretrained(model, { progress_callback });
  const lm = await AutoModelForCausalLM.from_pretrained(model, { dtype, device: dev, progress_callback });
  const eos = [lm.generation_config?.eos_token_id, lm.config?.eos_token_id, tokenizer.eos_token_id]
    .flat().filter((x) => x !== undefined && x !== null).map(Number);
  chat = { tokenizer, model: lm, eos: new Set(eos), key: `${model}/${dtype}/${dev}` };
  self.postMessage({ type: 'ready', model, dtype, device: dev, load_s: (performance.now() - t0) / 1000 });
}

async function generate({ id, messages, max_new_tokens, stopFlag }) {
  if (!chat) throw new Error('Load a model first.');
  const { tokenizer, model, eos } = chat;
  const inputs = tokenizer.apply_chat_template(messages, { add_generation_prompt: true, return_dict: true });
  const promptLen = inputs.input_ids.dims.at(-1);
  stopper.reset();
  stopper.flag = stopFlag ? new Int32Array(stopFlag) : null;
  if (stopper.flag) Atomics.store(stopper.flag, 0, 0);
  const t0 = performance.now();
  let ttft = null;
  let n = 0;
  const streamer = new TextStreamer(tokenizer, {
    skip_prompt: true,
    skip_special_tokens: true,
    token_callback_function: () => {
      n += 1;
      if (ttft === null) ttft = (performance.now() - t0) / 1000;
    },
    callback_function: (text) => self.postMessage({ type: 'token', id, text, n }),
  });
  const out = await model.generate({
    ...inputs, max_new_tokens, do_sample: false, streamer, stopping_criteria: [stopper],
  });
  const total = (performance.now() - t0) / 1000;
  let ids = Array.from(out.tolist()[0].slice(promptLen), Number);
  const finish = ids.length && eos.has(ids.at(-1)) ? 'stop' : stopper.interrupted ? 'stopped' : 'length';
  if (finish === 'stop') ids = ids.slice(0, -1);
  const text = tokenizer.decode(ids, { skip_special_tokens: true });
  const k = ids.length;
  self.postMessage({
    type: 'done', id, text, token_ids: ids, prompt_tokens: promptLen, completion_tokens: k, finish,
    ttft_s: ttft ?? total, total_s: total,
    // decode speed after the first token, as the server backends report it
    tokens_per_s: k > 1 && ttft !== null && total > ttft ? (k - 1) / (total - ttft) : 0,
  });
}

async function embed({ id, model, texts, base }) {
  configure(base);
  if (!extractors.has(model)) {
    extractors.set(model, await pipeline('feature-extraction', model, { dtype: 'fp32', device: 'wasm' }));
  }
  const out = await extractors.get(model)(texts, { pooling: 'mean', normalize: true });
  self.postMessage({ type: 'embedded', id, vectors: out.tolist() });
}

self.addEventListener('message', async ({ data }) => {
  try {
    if (data.type === 'load') await load(data);
    else if (data.type === 'generate') await generate(data);
    else if (data.type === 'embed') await embed(data);
    else if (data.type === 'stop') stopper.interrupt();
  } catch (err) {
    self.postMessage({ type: 'error', id: data.id, during: data.type, message: String(err?.message ?? err), stack: String(err?.stack ?? '') });
  }
});
