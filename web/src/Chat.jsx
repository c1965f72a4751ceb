import { useEffect, useState } from 'react';
import { fmt } from './api.js';

// Chat with history; tokens stream in, with tokens/s; Stop interrupts generation.
export default function Chat({ worker, listeners, ready }) {
  const [history, setHistory] = useState([]); // {role, content, stats?, token_ids?}
  const [input, setInput] = useState('');
  const [maxTokens, setMaxTokens] = useState(128);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const onEvent = (ev) => {
      if (ev.type === 'token' && ev.id?.startsWith('chat')) {
        setHistory((h) => [...h.slice(0, -1), { ...h.at(-1), content: h.at(-1).content + ev.text, n: ev.n }]);
      }
    };
    listeners.current.add(onEvent);
    return () => listeners.current.delete(onEvent);
  }, []);

  const send = async () => {
    const text = input.trim();
    if (!text || busy) return;
    const messages = [...history.map(({ role, content }) => ({ role, content })), { role: 'user', content: text }];
    setHistory([...messages, { role: 'assistant', content: '', pending: true }]);
    setInput('');
    setBusy(true);
    try {
      const r = await worker.request({ type: 'generate', messages, max_new_tokens: Number(maxTokens), idPrefix: 'chat' })
        .catch((e) => ({ error: e.message }));
      setHistory((h) => [...h.slice(0, -1), r.error
        ? { role: 'assistant', content: `⚠ ${r.error}`, error: true }
        : { role: 'assistant', content: r.text, stats: r, token_ids: r.token_ids }]);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="chat">
      <h2>Chat</h2>
      <ol id="history">
        {history.map((m, i) => (
          <li key={i} className={m.role} data-state={m.pending ? 'streaming' : 'done'}
              data-token-ids={m.token_ids ? m.token_ids.join(',') : undefined}>
            <b>{m.role}</b> <span className="content">{m.content}</span>
            {m.stats && (
              <small className="stats">{m.stats.completion_tokens} tokens · first token {fmt(m.stats.ttft_s)} s
                · {fmt(m.stats.tokens_per_s, 1)} tok/s{m.stats.finish === 'stopped' ? ' · stopped' : ''}</small>
            )}
            {m.pending && <small className="stats">{m.n ?? 0} tokens…</small>}
          </li>
        ))}
      </ol>
      <textarea id="prompt" value={input} onChange={(e) => setInput(e.target.value)} placeholder="Ask something…"
        onKeyDown={(e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); } }} />
      <div className="row">
        <label>max tokens <input id="max-tokens" type="number" min="1" max="2048" value={maxTokens}
          onChange={(e) => setMaxTokens(e.target.value)} /></label>
        <button id="send" onClick={send} disabled={!ready || busy}>Send</button>
        <button id="stop" onClick={() => worker.stop()} disabled={!busy}>Stop</button>
        <button onClick={() => setHistory([])} disabled={busy}>New chat</button>
      </div>
    </section>
  );
}
