import { useState } from 'react';
import { compareOnServer, fmt } from './api.js';

// The same prompt on the server (PyTorch, ONNX Runtime) and here in the browser, side by side.
export default function Compare({ worker, load, model, dtype }) {
  const [prompt, setPrompt] = useState('Explain in two sentences what ONNX is.');
  const [maxTokens, setMaxTokens] = useState(64);
  const [rows, setRows] = useState([]);
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);

  const run = async () => {
    setBusy(true);
    setNote('');
    setRows([]);
    const body = { prompt, max_new_tokens: Number(maxTokens), model, dtype };
    const server = compareOnServer(body).catch((e) => { setNote(e.message); return []; });
    const browser = load.status === 'ready'
      ? worker.request({ type: 'generate', idPrefix: 'compare', messages: [{ role: 'user', content: prompt }],
        max_new_tokens: Number(maxTokens) })
        .then((r) => [{ backend: `browser (${load.device}, ${load.dtype})`, load_s: load.load_s, ...r }])
        .catch((e) => [{ backend: 'browser', error: e.message }])
      : Promise.resolve([{ backend: 'browser', error: 'load a model above first' }]);
    const [s, b] = await Promise.all([server, browser]);
    setRows([...s, ...b]);
    setBusy(false);
  };

  return (
    <section className="compare">
      <h2>Compare backends</h2>
      <p>Runs one prompt greedily on the server (PyTorch and ONNX Runtime) and in this browser.</p>
      <textarea id="compare-prompt" value={prompt} onChange={(e) => setPrompt(e.target.value)} />
      <div className="row">
        <label>max tokens <input type="number" min="1" max="512" value={maxTokens} onChange={(e) => setMaxTokens(e.target.value)} /></label>
        <button id="compare-run" onClick={run} disabled={busy || !model}>Run comparison</button>
      </div>
      {note && <p className="note">{note}</p>}
      {rows.length > 0 && (
        <table id="compare-table">
          <thead><tr><th>where</th><th>load s</th><th>first token s</th><th>tok/s</th><th>tokens</th><th>output</th></tr></thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.backend}>
                <td>{r.backend}</td><td>{fmt(r.load_s)}</td><td>{fmt(r.ttft_s)}</td><td>{fmt(r.tokens_per_s, 1)}</td>
                <td>{r.completion_tokens ?? '–'}</td><td className="out">{r.error ? `⚠ ${r.error}` : r.text}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
