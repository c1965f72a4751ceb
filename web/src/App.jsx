import { useEffect, useMemo, useRef, useState } from 'react';
import { useWorker } from './useWorker.js';
import { BASE, fetchModels, fmt, mib } from './api.js';
import Chat from './Chat.jsx';
import Compare from './Compare.jsx';
import Search from './Search.jsx';

const params = new URLSearchParams(location.search);
// WASM prefers q8 (faithful; int8 is faster there but less faithful: pick it in the list);
// WebGPU prefers 4-bit (MatMulNBits runs on the GPU).
const PREFERRED = { wasm: ['q8', 'q4', 'int8', 'fp32'], webgpu: ['q4', 'fp32', 'q8', 'int8'] };

export default function App() {
  const [models, setModels] = useState([]);
  const [modelName, setModelName] = useState('');
  const [dtype, setDtype] = useState('');
  const [load, setLoad] = useState({ status: 'idle' });
  const [error, setError] = useState('');
  const [preparing, setPreparing] = useState(null); // the server's web export: {state, step, steps, message}
  const listeners = useRef(new Set());
  const worker = useWorker((ev) => {
    if (ev.type === 'progress') setLoad((s) => ({ ...s, loaded: ev.loaded, total: ev.total, files: ev.files }));
    if (ev.type === 'ready') setLoad({ status: 'ready', ...ev });
    if (ev.type === 'error') console.error(`llmspace worker (${ev.during}): ${ev.message}\n${ev.stack}`);
    if (ev.type === 'error' && ev.during === 'load') setLoad({ status: 'error', message: ev.message });
    listeners.current.forEach((fn) => fn(ev));
  });

  const chatModels = useMemo(() => models.filter((m) => m.task === 'text-generation'), [models]);
  const current = chatModels.find((m) => m.name === modelName);
  const device = params.get('device') ?? (navigator.gpu ? 'auto' : 'wasm');

  // While the server prepares the exports (its first start), poll until they are all there.
  useEffect(() => {
    let timer;
    let chosen = false;
    const poll = () => fetchModels().then(({ models: list, preparing: prep }) => {
      setModels(list);
      setPreparing(prep);
      const chat = list.filter((m) => m.task === 'text-generation');
      const first = chat.find((m) => m.name === params.get('model')) ?? chat[0];
      if (first && !chosen) {
        chosen = true;
        setModelName(first.name);
        const order = PREFERRED[device === 'wasm' ? 'wasm' : 'webgpu'];
        setDtype(params.get('dtype') ?? order.find((d) => first.dtypes.includes(d)));
      }
      if (prep?.state === 'running') timer = setTimeout(poll, 3000);
    }).catch((e) => setError(e.message));
    poll();
    return () => clearTimeout(timer);
  }, []);

  const loadModel = () => {
    setLoad({ status: 'loading', loaded: 0, total: 0, t0: performance.now() });
    worker.post({ type: 'load', model: modelName, dtype, device, base: BASE });
  };
  useEffect(() => { if (params.get('autoload') && modelName && dtype) loadModel(); }, [modelName, dtype]);

  // Test and console hook: embeddings with an exported feature-extraction model.
  useEffect(() => {
    window.llmspace = {
      embed: (model, texts) => worker.request({ type: 'embed', model, texts, base: BASE }).then((r) => r.vectors),
    };
  }, []);

  const pct = load.total ? Math.min(100, (100 * load.loaded) / load.total) : 0;
  return (
    <main>
      <header>
        <h1>llmspace <small>in your browser</small></h1>
        <p>Runs an exported ONNX model with Transformers.js on your machine: nothing you type leaves the page.</p>
      </header>
      {error && <p className="error">{error}</p>}
      <section className="loader">
        <label>Model <select value={modelName} onChange={(e) => setModelName(e.target.value)} disabled={load.status === 'loading'}>
          {chatModels.map((m) => <option key={m.name}>{m.name}</option>)}
        </select></label>
        <label>dtype <select id="dtype" value={dtype} onChange={(e) => setDtype(e.target.value)} disabled={load.status === 'loading'}>
          {(current?.dtypes ?? []).map((d) => <option key={d} value={d}>{d} ({mib(current.sizes[d])})</option>)}
        </select></label>
        <button id="load" onClick={loadModel} disabled={!modelName || load.status === 'loading'}>Load</button>
        <div className="progress" aria-label="loading progress">
          <div className="bar" style={{ width: `${load.status === 'ready' ? 100 : pct}%` }} />
        </div>
        <p id="status" data-status={load.status} data-device={load.device ?? ''} data-load-s={load.load_s ?? ''}>
          {load.status === 'idle' && (chatModels.length ? 'Pick a model and press Load.' : idleNote(preparing))}
          {load.status === 'loading' && `Loading ${load.files ?? 0} files: ${mib(load.loaded ?? 0)} of ${mib(load.total ?? 0)} (${fmt(pct, 0)}%)`}
          {load.status === 'ready' && `Running on ${load.device.toUpperCase()} · ${load.dtype} · loaded in ${fmt(load.load_s, 1)} s`}
          {load.status === 'error' && `Could not load: ${load.message}`}
        </p>
        {chatModels.length > 0 && preparing?.state === 'running' && <p id="preparing" className="note">{prepNote(preparing)}</p>}
      </section>
      <Chat worker={worker} listeners={listeners} ready={load.status === 'ready'} />
      <Compare worker={worker} listeners={listeners} load={load} model={modelName} dtype={dtype} />
      <Search models={models} />
    </main>
  );
}

const prepNote = (p) => `The server is preparing the browser models (step ${p.step || 1} of ${p.steps || '…'}: ${p.message}). This page updates by itself.`;

function idleNote(p) {
  if (p?.state === 'running') return prepNote(p);
  if (p?.state === 'failed') return `The server could not prepare the browser models: ${p.error}. Retry with \`llmspace export web\`.`;
  return 'No exported chat model yet: run `llmspace export web` (or `llmspace export onnx`).';
}
